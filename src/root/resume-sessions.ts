/**
 * What a gateway takes back from the log when it starts: the prompt ids the log ever held, the sessions a
 * previous process left open, and the client ids it held upstream sockets for.
 */
import type { Logger } from '../audit/report-error.js'
import type { Capture, ResumedSession } from '../capture/capture.js'
import type { ClientIdState } from '../gateway/create-gateway.js'
import type { RuntimeStore } from '../store/runtime-store.js'

/** The store reads a start-up needs. */
type ResumeStore = Pick<RuntimeStore, 'origin' | 'sessionIds' | 'sessions' | 'nodeRuns' | 'events'>

const CLIENT_IDS_STATE_KEY = 'gateway.client_ids'
/** Most sessions of one status read back at start. */
const MAX_RESUMED = 10_000

/**
 * Capture owns the index of known prompt ids; before the first request it learns every id the log ever held
 * (pruned and erased ones too), so a reused id is refused and no bypass resurrects an old record, and which
 * sessions the log holds as lost (a later finish is then a correction, never a silent change).
 */
export async function loadKnownPrompts(
  store: ResumeStore,
  capture: Pick<Capture, 'loadKnownPromptIds' | 'loadLostSessionIds'>,
): Promise<void> {
  capture.loadKnownPromptIds(await store.sessionIds())
  const lost = await store.sessions({ origin: store.origin, status: ['lost'], limit: MAX_RESUMED })
  capture.loadLostSessionIds(lost.map((s) => s.session_id))
}

/**
 * Takes back the sessions a previous process left open, so their remaining frames attach to them. Capture
 * remembers them as inherited: reconciliation may call them lost even before ComfyUI's answer to their POST
 * (see reconciliation.ts).
 */
export async function resumeOpenSessions(
  store: ResumeStore,
  capture: Pick<Capture, 'resume'>,
  logger: Logger,
): Promise<void> {
  const open = await store.sessions({
    origin: store.origin,
    status: ['queued', 'running'],
    limit: MAX_RESUMED,
  })
  if (open.length === 0) return
  const resumed: ResumedSession[] = []
  for (const session of open) {
    const nodeRuns = await store.nodeRuns({ sessionId: session.session_id, origin: store.origin })
    const startedNodes = new Map<string, number>()
    for await (const e of store.events({
      origin: store.origin,
      sessionId: session.session_id,
      kinds: ['node.started'],
    })) {
      const id = e.payload.node_id
      if (typeof id === 'string') startedNodes.set(id, Date.parse(e.time))
    }
    resumed.push({ session, nodeRuns, startedNodes })
  }
  capture.resume(resumed)
  logger.info(`resumed ${open.length} open session(s) from the store`)
}

/** The namespaced client ids the gateway re-attaches at start, kept in the store's state. */
export function clientIdState(store: Pick<RuntimeStore, 'getState' | 'setState'>): ClientIdState {
  return {
    load: async () => {
      const v = await store.getState(CLIENT_IDS_STATE_KEY)
      return Array.isArray(v) ? v.filter((x): x is string => typeof x === 'string') : []
    },
    save: async (ids) => store.setState(CLIENT_IDS_STATE_KEY, ids),
  }
}
