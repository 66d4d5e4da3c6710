/**
 * Who submitted each prompt travels, sealed, inside the prompt to ComfyUI: a crash between the 200 and the
 * commit of prompt.submitted then loses nothing that ComfyUI's queue and history do not give back.
 */
import { promptDigest, type SubmissionSeal } from '../capture/submission-seal.js'
import type { GatewayOptions } from '../gateway/create-gateway.js'

/** Largest POST /prompt body whose graph the submission seal digests (1 MiB). */
const MAX_DIGESTED_PROMPT_BYTES = 1 << 20

/** The gateway's `sealSubmission`, sealing with `seal`. */
export function sealSubmissions(seal: SubmissionSeal): NonNullable<GatewayOptions['sealSubmission']> {
  return (e) =>
    seal.seal(e.promptId, {
      submitter: e.submitter,
      upstream_client_id: e.upstreamClientId,
      submitted_at_ms: e.timeMs,
      // Digesting costs about as much CPU as the parse the proxy already did; past this size (far beyond any
      // real graph; workflows travel in extra_data) the seal binds the prompt id only, and says so.
      prompt_digest: e.bodyBytes <= MAX_DIGESTED_PROMPT_BYTES ? promptDigest(e.prompt) : null,
    })
}
