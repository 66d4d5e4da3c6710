/**
 * Store growth per session, through a running gateway: prompts of one workflow re-run with new seeds
 * (`bytes_per_session_repeat`), then prompts that are each a new workflow (`bytes_per_session_new`). The size
 * is SQLite's logical size (page_count × page_size, read through the WAL), measured once every prompt
 * of a step has finished and its session is committed.
 */
import http from 'node:http'
import Database from 'better-sqlite3'
import { request, withTimeout } from './bench-kit.js'
import { PROMPT_NODES, thirtyNodeBody } from './prompt-latency.js'

/** Options of {@link measureStoragePerSession}. */
export interface StoragePerSessionOptions {
  readonly gatewayUrl: string
  /** The gateway's SQLite file. */
  readonly storePath: string
  /** Prompts per step (default 20). */
  readonly prompts?: number
  /** Deadline for a step's sessions to finish (default 120 s). */
  readonly timeoutMs?: number
}

/** What {@link measureStoragePerSession} measured. */
export interface StoragePerSessionResult {
  readonly nodes: number
  readonly prompts: number
  readonly bytesPerSessionRepeat: number
  readonly bytesPerSessionNew: number
  /** Store size (bytes, sessions) before each step. */
  readonly measuredAt: { readonly repeat: StoreSize; readonly new: StoreSize; readonly end: StoreSize }
}

interface StoreSize {
  readonly bytes: number
  readonly sessions: number
}

const DONE = "('success', 'error', 'interrupted', 'cancelled', 'rejected', 'lost')"

function storeSize(path: string): StoreSize & { finished: number } {
  const db = new Database(path, { readonly: true, fileMustExist: true })
  try {
    const pages = db.pragma('page_count', { simple: true }) as number
    const pageSize = db.pragma('page_size', { simple: true }) as number
    const n = (sql: string): number => (db.prepare(sql).get() as { n: number }).n
    return {
      bytes: pages * pageSize,
      sessions: n('SELECT count(*) AS n FROM sessions'),
      finished: n(`SELECT count(*) AS n FROM sessions WHERE status IN ${DONE}`),
    }
  } finally {
    db.close()
  }
}

async function waitFinished(path: string, count: number, timeoutMs: number): Promise<StoreSize> {
  const deadline = Date.now() + timeoutMs
  for (;;) {
    const size = storeSize(path)
    if (size.finished >= count) return { bytes: size.bytes, sessions: size.sessions }
    if (Date.now() > deadline)
      throw new Error(`${size.finished} of ${count} sessions finished within ${timeoutMs} ms`)
    await new Promise((r) => setTimeout(r, 200))
  }
}

/** A workflow of its own: the chain's node types differ by `variant`, and so does the UI workflow's id. */
function newWorkflowBody(variant: number, clientId: string): Record<string, unknown> {
  const body = thirtyNodeBody(`new${variant}-${Date.now()}`, clientId) as {
    prompt: Record<string, { class_type: string; inputs: Record<string, unknown> }>
    extra_data: { extra_pnginfo: { workflow: { id: string; nodes: { type: string }[] } } }
  }
  // Blur some links of the chain (which ones depends on the variant), so the graph itself is new.
  for (let i = 2; i < PROMPT_NODES; i++) {
    if ((i + variant) % 3 === 0) {
      const image = body.prompt[String(i)]!.inputs.image
      body.prompt[String(i)] = {
        class_type: 'ImageBlur',
        inputs: { image, blur_radius: 1 + (variant % 4), sigma: 1.0 },
      }
      body.extra_data.extra_pnginfo.workflow.nodes[i - 1]!.type = 'ImageBlur'
    }
  }
  body.extra_data.extra_pnginfo.workflow.id = `wf-bench-new-${variant}`
  return body
}

/** Runs both steps; every prompt goes through the gateway. */
export async function measureStoragePerSession(
  options: StoragePerSessionOptions,
): Promise<StoragePerSessionResult> {
  const prompts = options.prompts ?? 20
  const timeoutMs = options.timeoutMs ?? 120_000
  const agent = new http.Agent({ keepAlive: true, maxSockets: 4 })
  const submit = async (body: Record<string, unknown>): Promise<void> => {
    const res = await withTimeout(
      request(agent, `${options.gatewayUrl}/prompt`, 'POST', JSON.stringify(body)),
      30_000,
      'POST /prompt',
    )
    if (res.status !== 200) throw new Error(`POST /prompt answered ${res.status}: ${res.body.slice(0, 300)}`)
  }
  try {
    // One run first, so the repeat step measures re-runs of a workflow the store has already seen.
    await submit(thirtyNodeBody(`first-${Date.now()}`, 'bench-storage'))
    const repeatAt = await waitFinished(options.storePath, 1, timeoutMs)
    for (let i = 0; i < prompts; i++)
      await submit(thirtyNodeBody(`repeat${i}-${Date.now()}`, 'bench-storage'))
    const newAt = await waitFinished(options.storePath, 1 + prompts, timeoutMs)
    for (let i = 0; i < prompts; i++) await submit(newWorkflowBody(i, 'bench-storage'))
    const end = await waitFinished(options.storePath, 1 + 2 * prompts, timeoutMs)
    return {
      nodes: PROMPT_NODES,
      prompts,
      bytesPerSessionRepeat: Math.round(
        (newAt.bytes - repeatAt.bytes) / (newAt.sessions - repeatAt.sessions),
      ),
      bytesPerSessionNew: Math.round((end.bytes - newAt.bytes) / (end.sessions - newAt.sessions)),
      measuredAt: { repeat: repeatAt, new: newAt, end },
    }
  } finally {
    agent.destroy()
  }
}
