/**
 * ComfyUI's `GET /features` body, fetched once and kept: the hub answers every downstream feature-flags
 * frame with it, as ComfyUI answers any socket. A failed fetch is not kept, so the next one tries again.
 */
export class FeaturesCache {
  readonly #fetch: () => Promise<string | null>
  #features: string | null = null
  #loading: Promise<string | null> | null = null

  constructor(fetch: () => Promise<string | null>) {
    this.#fetch = fetch
  }

  /** The body once fetched, else null. */
  get current(): string | null {
    return this.#features
  }

  /** The body, fetched unless already had; concurrent callers share one fetch. */
  load(): Promise<string | null> {
    if (this.#features !== null) return Promise.resolve(this.#features)
    if (!this.#loading) {
      this.#loading = this.#fetch()
        .catch(() => null)
        .then((f) => {
          this.#loading = null
          if (f !== null) this.#features = f
          return f
        })
    }
    return this.#loading
  }
}
