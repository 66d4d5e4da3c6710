/**
 * The demo's clock: a few days of studio history compressed into minutes. While the history is written it is
 * virtual: it moves only when the stand-in finishes a wait (by the recording's milliseconds for that wait) and
 * when the demo jumps ahead to the next submission. So every recorded duration is exactly the recording's
 * (times any planted slowdown), however loaded the machine is. The gateway and the stand-in share it, so their
 * timestamps agree. Once the history is written it follows the wall.
 */
export class DemoClock {
  #anchorReal: number
  #anchorSim: number
  #rate = 0
  readonly #real: () => number

  constructor(start: number, real: () => number = Date.now) {
    this.#real = real
    this.#anchorReal = real()
    this.#anchorSim = start
  }

  /** Epoch ms on the demo's time line (whole ms, never decreasing). */
  readonly now = (): number => Math.floor(this.#exact())

  #exact(): number {
    return this.#anchorSim + (this.#real() - this.#anchorReal) * this.#rate
  }

  /** Moves the clock on by `millis` (a wait of the stand-in ended). */
  readonly advanceBy = (millis: number): void => {
    this.advanceTo(this.#exact() + Math.max(0, millis))
  }

  /** Jumps ahead to `time` (a time already passed is left alone: the clock never goes back). */
  advanceTo(time: number): void {
    const t = this.#exact()
    this.#anchorReal = this.#real()
    this.#anchorSim = Math.max(t, time)
  }

  /** From now on the clock follows the wall (after catching up with it, if it is behind). */
  followWall(): void {
    this.advanceTo(this.#real())
    this.#rate = 1
  }
}
