import { afterEach, describe, expect, it, vi } from 'vitest'
import { createAnswerGate } from './answer-gate.js'

/** Whether `p` settled by the time already-queued callbacks ran (no timers involved). */
async function settled(p: Promise<void>): Promise<boolean> {
  let done = false
  void p.then(() => {
    done = true
  })
  await new Promise<void>((resolve) => setImmediate(resolve))
  return done
}

afterEach(() => {
  vi.useRealTimers()
})

describe('answer gate: capture analyses a prompt only once its answer is forwarded', () => {
  it('holds both bodies of a prompt until that prompt is answered, and no other body', async () => {
    const gate = createAnswerGate()
    const body = Buffer.from('{"prompt": {}}')
    const forwarded = Buffer.from('{"client_id": "u-1~a", "prompt": {}}')
    const other = Buffer.from('{"prompt": {}}')
    gate.submitted('p1', [body, forwarded])
    const held = [gate.whenAnswered(body), gate.whenAnswered(forwarded)]
    expect(await settled(gate.whenAnswered(other))).toBe(true)
    gate.answered('p2')
    expect(await settled(held[0]!)).toBe(false)
    expect(await settled(held[1]!)).toBe(false)
    gate.answered('p1')
    expect(await settled(held[0]!)).toBe(true)
    expect(await settled(held[1]!)).toBe(true)
    // Released for good: a later analysis of the same bytes is not held again.
    expect(await settled(gate.whenAnswered(body))).toBe(true)
  })

  it('never holds empty bodies (the gateway’s own refusals share one empty buffer)', async () => {
    const gate = createAnswerGate()
    const empty = Buffer.alloc(0)
    gate.submitted('refused', [empty, empty])
    expect(await settled(gate.whenAnswered(empty))).toBe(true)
  })

  it('lets the analysis run anyway when no answer is reported within the hold limit', async () => {
    vi.useFakeTimers()
    const gate = createAnswerGate(1000)
    const body = Buffer.from('{"prompt": {}}')
    gate.submitted('slow', [body])
    let done = false
    void gate.whenAnswered(body).then(() => {
      done = true
    })
    await vi.advanceTimersByTimeAsync(999)
    expect(done).toBe(false)
    await vi.advanceTimersByTimeAsync(1)
    expect(done).toBe(true)
  })
})
