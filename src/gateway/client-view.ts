/**
 * ComfyUI's `/history`, `/queue` and jobs answers as the client would see them talking to ComfyUI directly.
 *
 * The gateway runs every prompt under a namespaced client id (client-ids.ts), so ComfyUI shows that id in
 * `extra_data`, and for a prompt sent without an id it behaves as if there were one: it records cached output
 * nodes' UI in `outputs`/`meta`, which it skips when `server.client_id` is None. These functions undo both
 * with text edits on ComfyUI's own bytes (Python's `1.0`, NaN, key order stay as written), and derive
 * everything from the answer itself: the id says whose it is, the entry's `execution_cached` message says
 * which outputs a direct client would not have. They never throw: anything unexpected passes unchanged.
 */
import { parseJson, stringifyJson } from '../audit/json.js'
import type { JsonObject, JsonValue } from '../audit/types.js'
import { SUBMISSION_SEAL_KEY } from '../capture/submission-seal.js'
import { parseClientId } from './client-ids.js'
import {
  applyEdits,
  arrayElements,
  objectMembers,
  removeMembers,
  skipSpace,
  type JsonMember,
  type JsonSpan,
  type TextEdit,
} from './json-members.js'

/** The GET routes whose answers carry client ids or client-dependent outputs. */
export type ClientViewRoute = 'history' | 'queue' | 'job' | 'jobs'

// Both spellings of each route (protocol §2): core routes also live under /api, the jobs routes are declared
// as /api/jobs and so also live under /api/api/jobs. aiohttp's `{id}` matches one segment.
const ROUTES: readonly (readonly [RegExp, ClientViewRoute])[] = [
  [/^(?:\/api)?\/history(?:\/[^/]+)?$/, 'history'],
  [/^(?:\/api)?\/queue$/, 'queue'],
  [/^(?:\/api)?\/api\/jobs$/, 'jobs'],
  [/^(?:\/api)?\/api\/jobs\/[^/]+$/, 'job'],
]

/** Which answer `method pathname` gets from ComfyUI, if it is one whose text the gateway must adjust. */
export function clientViewRoute(method: string, pathname: string): ClientViewRoute | null {
  if (method !== 'GET') return null
  for (const [pattern, route] of ROUTES) if (pattern.test(pathname)) return route
  return null
}

const OPEN_OBJECT = 0x7b
const OPEN_ARRAY = 0x5b
const QUOTE = 0x22
const PREVIEWABLE_MEDIA = new Set(['images', 'video', 'audio'])
const THREE_D_EXTENSIONS = ['.obj', '.fbx', '.gltf', '.glb']

const utf8 = new TextDecoder('utf-8', { fatal: true })

function isObject(v: JsonValue | undefined): v is JsonObject {
  return typeof v === 'object' && v !== null && !Array.isArray(v)
}

/** The member Python's json.loads would keep (the last of duplicates). */
function member(members: readonly JsonMember[], key: string): JsonMember | undefined {
  for (let i = members.length - 1; i >= 0; i--) if (members[i]!.key === key) return members[i]
  return undefined
}

function objectAt(text: string, m: JsonMember | JsonSpan | undefined): JsonMember[] | null {
  if (m === undefined) return null
  const start = 'valueStart' in m ? m.valueStart : m.start
  return text.charCodeAt(start) === OPEN_OBJECT ? objectMembers(text, start) : null
}

function arrayAt(text: string, m: JsonMember | JsonSpan | undefined): JsonSpan[] | null {
  if (m === undefined) return null
  const start = 'valueStart' in m ? m.valueStart : m.start
  return text.charCodeAt(start) === OPEN_ARRAY ? arrayElements(text, start) : null
}

/** What restoring the client id of one `extra_data` object takes. */
interface RestoredId {
  /** The prompt came without a client id; the gateway injected one. */
  readonly noclient: boolean
  readonly edits: TextEdit[]
}

const UNTOUCHED: RestoredId = { noclient: false, edits: [] }

/**
 * Puts the client's own id back into `extra_data`, or takes out the one the gateway injected (ComfyUI copies
 * `client_id` into `extra_data` only when the client gave one).
 */
function restoreClientId(text: string, extraData: JsonSpan | undefined): RestoredId {
  const members = objectAt(text, extraData)
  if (members === null) return UNTOUCHED
  // The gateway's sealed attribution is its own business: a direct client would never see it.
  const isSeal = (x: JsonMember): boolean => x.key === SUBMISSION_SEAL_KEY
  const m = member(members, 'client_id')
  if (m === undefined || text.charCodeAt(m.valueStart) !== QUOTE)
    return { noclient: false, edits: removeMembers(members, isSeal) }
  const upstreamId = JSON.parse(text.slice(m.valueStart, m.valueEnd)) as string
  const parsed = parseClientId(upstreamId)
  if (parsed.kind === 'foreign') return { noclient: false, edits: removeMembers(members, isSeal) }
  if (parsed.kind === 'noclient')
    return { noclient: true, edits: removeMembers(members, (x) => x.key === 'client_id' || isSeal(x)) }
  // The namespace prefix is ASCII that Python writes unescaped, so cutting it out leaves the client's id
  // escaped exactly as Python escaped it.
  const prefix = upstreamId.slice(0, upstreamId.length - parsed.downstreamId.length)
  const quoted = text.startsWith(prefix, m.valueStart + 1)
    ? '"' + text.slice(m.valueStart + 1 + prefix.length, m.valueEnd)
    : stringifyJson(parsed.downstreamId, { ascii: true })
  return {
    noclient: false,
    edits: [{ start: m.valueStart, end: m.valueEnd, text: quoted }, ...removeMembers(members, isSeal)],
  }
}

/** The node ids in the `execution_cached` message(s) of a history `status` (or a job's `execution_status`). */
function cachedNodes(text: string, status: JsonMember | undefined): Set<string> {
  const nodes = new Set<string>()
  if (status === undefined) return nodes
  const parsed = parseJson(text.slice(status.valueStart, status.valueEnd))
  if (!parsed.ok || !isObject(parsed.value)) return nodes
  const messages = parsed.value['messages']
  if (!Array.isArray(messages)) return nodes
  for (const message of messages) {
    if (!Array.isArray(message) || message[0] !== 'execution_cached' || !isObject(message[1])) continue
    const list = message[1]['nodes']
    if (Array.isArray(list)) for (const n of list) if (typeof n === 'string') nodes.add(n)
  }
  return nodes
}

/** A history entry (`{prompt, outputs, status, meta}`) as a direct client would see it. */
function historyEntryEdits(text: string, entryStart: number): TextEdit[] {
  if (text.charCodeAt(entryStart) !== OPEN_OBJECT) return []
  const members = objectMembers(text, entryStart)
  const prompt = arrayAt(text, member(members, 'prompt'))
  if (prompt === null) return []
  const restored = restoreClientId(text, prompt[3])
  if (!restored.noclient) return restored.edits
  const edits = [...restored.edits]
  const cached = cachedNodes(text, member(members, 'status'))
  if (cached.size === 0) return edits
  for (const key of ['outputs', 'meta']) {
    const inner = objectAt(text, member(members, key))
    if (inner !== null) edits.push(...removeMembers(inner, (x) => cached.has(x.key)))
  }
  return edits
}

/** An output item chosen as `preview_output`, by position. */
interface PreviewPick {
  readonly node: JsonMember
  readonly media: JsonMember
  readonly item: JsonSpan
}

interface OutputsSummary {
  readonly count: number
  readonly preview: PreviewPick | null
}

function previewable(mediaType: string, item: JsonObject): boolean {
  if (PREVIEWABLE_MEDIA.has(mediaType)) return true
  // Where ComfyUI itself would fail on an odd type (a non-string `format`), nothing is previewable here.
  const format = item['format']
  if (typeof format === 'string' && (format.startsWith('video/') || format.startsWith('audio/'))) return true
  const filename = item['filename']
  if (typeof filename !== 'string') return false
  const lower = filename.toLowerCase()
  return THREE_D_EXTENSIONS.some((ext) => lower.endsWith(ext))
}

/**
 * ComfyUI's jobs summary of history `outputs` (comfy_execution/jobs.py): every dict item of every list counts
 * (`animated` is a flag, not items); the preview is the first previewable item of type `output`, else the
 * first previewable one.
 */
function summarize(text: string, nodes: readonly JsonMember[]): OutputsSummary {
  let count = 0
  let preview: PreviewPick | null = null
  let fallback: PreviewPick | null = null
  for (const node of nodes) {
    const media = objectAt(text, node)
    if (media === null) continue
    for (const m of media) {
      if (m.key === 'animated') continue
      const items = arrayAt(text, m)
      if (items === null) continue
      for (const item of items) {
        if (text.charCodeAt(item.start) !== OPEN_OBJECT) continue
        count++
        if (preview !== null) continue
        const fields = parseJson(text.slice(item.start, item.end))
        if (!fields.ok || !isObject(fields.value) || !previewable(m.key, fields.value)) continue
        const pick = { node, media: m, item }
        if (fields.value['type'] === 'output') preview = pick
        else fallback ??= pick
      }
    }
  }
  return { count, preview: preview ?? fallback }
}

/** `{**item, 'nodeId': node_id, 'mediaType': media_type}` as Python's json.dumps writes it. */
function previewText(text: string, pick: PreviewPick): string {
  const nodeId = text.slice(pick.node.keyStart, pick.node.keyEnd)
  const mediaType = text.slice(pick.media.keyStart, pick.media.keyEnd)
  const parts: string[] = []
  let hasNodeId = false
  let hasMediaType = false
  for (const m of objectMembers(text, pick.item.start)) {
    if (m.key === 'nodeId') {
      hasNodeId = true
      parts.push(text.slice(m.keyStart, m.valueStart) + nodeId)
    } else if (m.key === 'mediaType') {
      hasMediaType = true
      parts.push(text.slice(m.keyStart, m.valueStart) + mediaType)
    } else {
      parts.push(text.slice(m.keyStart, m.valueEnd))
    }
  }
  if (!hasNodeId) parts.push(`"nodeId": ${nodeId}`)
  if (!hasMediaType) parts.push(`"mediaType": ${mediaType}`)
  return `{${parts.join(', ')}}`
}

/**
 * Edits to a job's `outputs_count` / `preview_output` (members `job` of `jobText`) for outputs `nodes` of
 * `outputsText` without the `dropped` ones. Fields whose value does not change keep their bytes.
 */
function summaryEdits(
  jobText: string,
  job: readonly JsonMember[],
  outputsText: string,
  nodes: readonly JsonMember[],
  dropped: ReadonlySet<string>,
): TextEdit[] {
  const before = summarize(outputsText, nodes)
  const count = member(job, 'outputs_count')
  // An entry that no longer matches the job (replaced under a reused prompt id since) says nothing about it.
  if (count === undefined || jobText.slice(count.valueStart, count.valueEnd) !== String(before.count))
    return []
  const after = summarize(
    outputsText,
    nodes.filter((n) => !dropped.has(n.key)),
  )
  const edits: TextEdit[] = []
  if (before.count !== after.count)
    edits.push({ start: count.valueStart, end: count.valueEnd, text: String(after.count) })
  const preview = member(job, 'preview_output')
  if (preview !== undefined && before.preview?.item.start !== after.preview?.item.start) {
    if (after.preview === null) edits.push(...removeMembers(job, (x) => x.key === 'preview_output'))
    else
      edits.push({
        start: preview.valueStart,
        end: preview.valueEnd,
        text: previewText(outputsText, after.preview),
      })
  }
  return edits
}

/** A `/api/jobs/{id}` job as a direct client would see it. */
function jobEdits(text: string, jobStart: number): TextEdit[] {
  if (text.charCodeAt(jobStart) !== OPEN_OBJECT) return []
  const members = objectMembers(text, jobStart)
  const workflow = objectAt(text, member(members, 'workflow'))
  if (workflow === null) return []
  const extra = member(workflow, 'extra_data')
  const restored = restoreClientId(text, extra && { start: extra.valueStart, end: extra.valueEnd })
  if (!restored.noclient) return restored.edits
  const edits = [...restored.edits]
  const cached = cachedNodes(text, member(members, 'execution_status'))
  const outputs = objectAt(text, member(members, 'outputs'))
  if (cached.size === 0 || outputs === null) return edits
  edits.push(...removeMembers(outputs, (x) => cached.has(x.key)))
  edits.push(...summaryEdits(text, members, text, outputs, cached))
  return edits
}

function rootObject(text: string): JsonMember[] | null {
  const start = skipSpace(text, 0)
  return text.charCodeAt(start) === OPEN_OBJECT ? objectMembers(text, start) : null
}

/** Decodes, edits and re-encodes; the body itself when there is nothing to change or it is not what we expect. */
function edit(body: Buffer, edits: (text: string) => TextEdit[]): Buffer {
  try {
    const text = utf8.decode(body)
    const list = edits(text)
    return list.length === 0 ? body : Buffer.from(applyEdits(text, list), 'utf8')
  } catch {
    return body
  }
}

/** `GET /history` or `/history/{id}` (`{prompt_id: entry}`) as a direct client would see it. */
export function rewriteHistoryAnswer(body: Buffer): Buffer {
  return edit(body, (text) => {
    const root = rootObject(text)
    return root === null ? [] : root.flatMap((m) => historyEntryEdits(text, m.valueStart))
  })
}

/** `GET /queue` (`{queue_running: [item], queue_pending: [item]}`) as a direct client would see it. */
export function rewriteQueueAnswer(body: Buffer): Buffer {
  return edit(body, (text) => {
    const root = rootObject(text)
    if (root === null) return []
    const edits: TextEdit[] = []
    for (const key of ['queue_running', 'queue_pending']) {
      for (const item of arrayAt(text, member(root, key)) ?? [])
        edits.push(...restoreClientId(text, arrayAt(text, item)?.[3]).edits)
    }
    return edits
  })
}

/** `GET /api/jobs/{id}` as a direct client would see it. */
export function rewriteJobAnswer(body: Buffer): Buffer {
  return edit(body, (text) => jobEdits(text, skipSpace(text, 0)))
}

/** Each `jobs` item of a `GET /api/jobs` answer, with its members. */
function listItems(text: string): { id: string; members: JsonMember[] }[] {
  const root = rootObject(text)
  if (root === null) return []
  const out: { id: string; members: JsonMember[] }[] = []
  for (const item of arrayAt(text, member(root, 'jobs')) ?? []) {
    const members = objectAt(text, item)
    const id = members && member(members, 'id')
    if (!members || !id || text.charCodeAt(id.valueStart) !== QUOTE) continue
    out.push({ id: JSON.parse(text.slice(id.valueStart, id.valueEnd)) as string, members })
  }
  return out
}

/**
 * The prompt ids of a `GET /api/jobs` answer whose history entry {@link rewriteJobListAnswer} needs: list
 * items carry no client id, and only items with outputs can differ.
 */
export function jobListLookups(body: Buffer): string[] {
  try {
    const text = utf8.decode(body)
    return listItems(text)
      .filter(({ members }) => {
        const count = member(members, 'outputs_count')
        return count !== undefined && text.slice(count.valueStart, count.valueEnd) !== '0'
      })
      .map(({ id }) => id)
  } catch {
    return []
  }
}

/** The entries of a `/history` answer (`{prompt_id: entry}`), as text, by prompt id. */
export function historyEntries(body: Buffer): Map<string, string> {
  const entries = new Map<string, string>()
  try {
    const text = utf8.decode(body)
    for (const m of rootObject(text) ?? []) entries.set(m.key, text.slice(m.valueStart, m.valueEnd))
  } catch {
    // Not a history answer: no entries.
  }
  return entries
}

/**
 * `GET /api/jobs` as a direct client would see it: `outputs_count` and `preview_output` of the items whose
 * history entry (`entries`, by prompt id, from {@link historyEntries}) shows a prompt sent without client id.
 */
export function rewriteJobListAnswer(body: Buffer, entries: ReadonlyMap<string, string>): Buffer {
  return edit(body, (text) => {
    const edits: TextEdit[] = []
    for (const { id, members } of listItems(text)) {
      const entryText = entries.get(id)
      if (entryText === undefined) continue
      const entry = rootObject(entryText)
      if (entry === null) continue
      const prompt = arrayAt(entryText, member(entry, 'prompt'))
      if (prompt === null || !restoreClientId(entryText, prompt[3]).noclient) continue
      const cached = cachedNodes(entryText, member(entry, 'status'))
      const outputs = objectAt(entryText, member(entry, 'outputs'))
      if (cached.size === 0 || outputs === null) continue
      edits.push(...summaryEdits(text, members, entryText, outputs, cached))
    }
    return edits
  })
}
