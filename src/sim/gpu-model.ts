/**
 * A simulated H200 as `/system_stats` reports it. On CUDA ComfyUI reports
 * `vram_free = driver free + (reserved - active)`, `torch_vram_total = reserved`,
 * `torch_vram_free = reserved - active`; with a fixed driver baseline that is `baseline - active`.
 * Figures are the recording's (bytes).
 */

const MIB = 1024 * 1024
const VRAM_TOTAL = 150109880320
const FREE_AT_START = 149557477376
// The CUDA context the first prompt creates.
const CONTEXT_BYTES = 169869312
const RAM_TOTAL = 135148564480
const RAM_FREE = 133863256064

/** Loaded-model footprints seen in the recording's SD1.5 runs. */
const CHECKPOINT_ACTIVE = 1719041928
const CHECKPOINT_RESERVED = 1744830464
const SAMPLER_RESERVED = 2046820352
const DECODE_RESERVED = 2382364672
const DECODE_ACTIVE = 2168261274

interface DeviceStats {
  readonly vram_total: number
  readonly vram_free: number
  readonly torch_vram_total: number
  readonly torch_vram_free: number
  readonly ram_total: number
  readonly ram_free: number
}

/** Mutable device memory state, moved by the simulated nodes. */
export class GpuModel {
  #baseline = FREE_AT_START
  #contextCreated = false
  #modelsActive = 0
  #modelsReserved = 0
  #held = 0
  #transientActive = 0
  #transientReserved = 0

  stats(): DeviceStats {
    const active = this.#modelsActive + this.#held + this.#transientActive
    const reserved = Math.max(this.#modelsReserved + this.#held + this.#transientReserved, active)
    return {
      vram_total: VRAM_TOTAL,
      vram_free: this.#baseline - active,
      torch_vram_total: reserved,
      torch_vram_free: reserved - active,
      ram_total: RAM_TOTAL,
      ram_free: RAM_FREE - Math.round(this.#modelsActive / 4),
    }
  }

  /** A node starts computing on the device (image ops use a 32 MiB block). */
  beginNode(): void {
    if (!this.#contextCreated) {
      this.#contextCreated = true
      this.#baseline -= CONTEXT_BYTES
    }
    this.#transientReserved = 32 * MIB
    this.#transientActive = 1769920
  }

  endNode(): void {
    this.#transientActive = 0
  }

  /** AuditGpuAlloc: a tensor of `bytes` stays allocated. */
  hold(bytes: number): void {
    this.#held += bytes
  }

  /** AuditGpuFree: drop held tensors and empty the cache. */
  release(): void {
    this.#held = 0
    this.#transientReserved = 0
  }

  loadCheckpoint(): void {
    if (this.#modelsReserved >= CHECKPOINT_RESERVED) return
    this.#modelsActive = CHECKPOINT_ACTIVE
    this.#modelsReserved = CHECKPOINT_RESERVED
  }

  sample(): void {
    if (this.#modelsReserved > 0) this.#modelsReserved = Math.max(this.#modelsReserved, SAMPLER_RESERVED)
  }

  decode(): void {
    if (this.#modelsReserved > 0) {
      this.#modelsReserved = Math.max(this.#modelsReserved, DECODE_RESERVED)
      this.#modelsActive = Math.max(this.#modelsActive, DECODE_ACTIVE)
    }
  }

  /** After a prompt: `soft_empty_cache` returns unused blocks. */
  endPrompt(): void {
    this.#transientActive = 0
    this.#transientReserved = 0
  }

  /** POST /free with unload_models. */
  unloadModels(): void {
    this.#modelsActive = 0
    this.#modelsReserved = 0
  }
}
