import type { Submitter } from '../audit/types.js'
import type { UpstreamFrame } from '../comfyui/frames.js'

/**
 * What the gateway tells capture. The gateway calls these synchronously on its hot path and never awaits
 * anything: an implementation must only enqueue work (parse, hash and store later) and never throw.
 * All times are epoch milliseconds taken when the gateway saw the bytes.
 */
export interface CaptureTap {
  /**
   * A POST /prompt is about to be forwarded. `body` is the raw request body as the client sent it
   * (the gateway may have rewritten `client_id`/`prompt_id`; `forwardedBody` is what went upstream).
   * `promptId` is the id the gateway assigned or the client chose.
   */
  promptSubmitted(e: {
    promptId: string
    /** Namespaced client id the prompt runs under upstream (always set: injected when absent). */
    upstreamClientId: string
    /** Client id the downstream client gave (null when it gave none). */
    clientId: string | null
    body: Buffer
    forwardedBody: Buffer
    submitter: Submitter
    timeMs: number
  }): void
  /** ComfyUI answered that POST /prompt (or the gateway refused it itself: `refusedBy: 'gateway'`). */
  promptAnswered(e: {
    promptId: string
    status: number
    body: Buffer
    timeMs: number
    refusedBy?: 'gateway'
    /** Set when ComfyUI could not be reached. */
    error?: string
  }): void
  /**
   * The gateway refused a POST /prompt itself, without forwarding it, because its client-chosen `prompt_id`
   * is already known (see `claimPromptId` of the gateway). The prompt id belongs to another session, so this
   * must not touch that session: it is recorded on its own.
   */
  promptRefused(e: {
    promptId: string
    clientId: string | null
    body: Buffer
    submitter: Submitter
    status: number
    /** The answer the client got. */
    answer: Buffer
    reason: 'prompt_id_taken'
    timeMs: number
  }): void
  /** One frame received from ComfyUI on the upstream socket of `upstreamClientId`, read once by the hub. */
  frame(e: { upstreamClientId: string; frame: UpstreamFrame; timeMs: number }): void
  /** A state-changing request other than POST /prompt, after ComfyUI answered it. */
  action(e: {
    kind: 'interrupt' | 'queue' | 'history' | 'upload' | 'free'
    method: string
    path: string
    body: Buffer
    status: number
    responseBody: Buffer | null
    submitter: Submitter
    timeMs: number
  }): void
}
