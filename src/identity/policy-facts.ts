/**
 * Looks up what {@link authorize} needs for one request ({@link factsNeeded}): who owns the prompts it names,
 * which prompts run now and whose they are, or who made the file `/view` asks for.
 */
import { ownsClientId, itemClientId } from './comfy-items.js'
import type { OutputClientIds } from './output-owners.js'
import { factsNeeded, type PolicyFacts, type PolicyOptions, type PolicyRequest } from './policy.js'
import type { UpstreamLookups } from './upstream-lookups.js'

/** What {@link createPolicyFacts} reads from. */
interface PolicyFactsSources {
  readonly policy: PolicyOptions
  readonly upstream: UpstreamLookups
  readonly outputClientIds: OutputClientIds
  /** Who submitted a prompt, as recorded; null when unknown. */
  readonly promptOwner: (promptId: string) => Promise<string | null>
}

/** The facts for `req`, sent by `user`. */
export type LookUpFacts = (req: PolicyRequest, user: string) => Promise<PolicyFacts>

/** Builds the look-up over the store's submitters and ComfyUI's queue and history. */
export function createPolicyFacts(sources: PolicyFactsSources): LookUpFacts {
  return async (req, user) => {
    const need = factsNeeded(req, sources.policy)
    const owners = new Map<string, string | null>()
    let running: PolicyFacts['running'] = []
    if (need.file) {
      // A cached re-run lists the same file under several prompts: each of their submitters may see it.
      const clientIds = await sources.outputClientIds(need.file)
      const mine = clientIds.some((id) => ownsClientId(id, user))
      return { owners, running, fileOwner: mine ? user : null }
    }
    if (need.promptIds.length === 0 && !need.running) return { owners, running }
    const queue = await sources.upstream.queue()
    const queued = new Map<string, string | null>()
    for (const item of [...queue.running, ...queue.pending]) {
      if (Array.isArray(item) && typeof item[1] === 'string') queued.set(item[1], itemClientId(item))
    }
    for (const id of need.promptIds) {
      let owner = await sources.promptOwner(id)
      // Not committed yet (capture writes in small group commits): ComfyUI's queue shows whose client sent it.
      if (owner === null && ownsClientId(queued.get(id) ?? null, user)) owner = user
      owners.set(id, owner)
    }
    if (need.running) {
      running = queue.running.flatMap((item) =>
        Array.isArray(item) && typeof item[1] === 'string'
          ? [{ prompt_id: item[1], user: ownsClientId(itemClientId(item), user) ? user : null }]
          : [],
      )
    }
    return { owners, running }
  }
}
