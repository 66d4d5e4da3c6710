/**
 * `/api/jobs` and `/api/jobs/{id}` (comfy_execution/jobs.py): one job view over the running, pending
 * and finished prompts, with ComfyUI's field rules (null fields left out) and query validation.
 */
import { entriesOf, isPyObject } from './py-json.js'
import type { PyObject, PyValue } from './py-json.js'
import type { HistoryEntry, QueueItem } from './prompt-queue.js'

const JOB_STATUSES = ['pending', 'in_progress', 'completed', 'failed'] as const

const PREVIEWABLE = new Set(['images', 'video', 'audio'])
const THREE_D = ['.obj', '.fbx', '.gltf', '.glb']

function prune(o: Record<string, PyValue | undefined>): PyObject {
  const out: PyObject = {}
  for (const [k, v] of Object.entries(o)) if (v !== undefined && v !== null) out[k] = v
  return out
}

function meta(extraData: PyValue): { createTime: PyValue | undefined; workflowId: PyValue | undefined } {
  const ed = isPyObject(extraData) ? extraData : {}
  const png = isPyObject(ed.extra_pnginfo) ? ed.extra_pnginfo : {}
  const wf = isPyObject(png.workflow) ? png.workflow : {}
  return { createTime: ed.create_time, workflowId: wf.id }
}

function queueJob(item: QueueItem, status: string): PyObject {
  const m = meta(item.extraData)
  return prune({
    id: item.promptId,
    status,
    priority: item.number,
    create_time: m.createTime,
    outputs_count: 0,
    workflow_id: m.workflowId,
  })
}

function outputsSummary(outputs: PyValue): [number, PyObject | undefined] {
  let count = 0
  let preview: PyObject | undefined
  let fallback: PyObject | undefined
  for (const [nodeId, nodeOutputs] of entriesOf(outputs)) {
    if (!isPyObject(nodeOutputs) && !(nodeOutputs instanceof Map)) continue
    for (const [mediaType, items] of entriesOf(nodeOutputs)) {
      if (mediaType === 'animated' || !Array.isArray(items)) continue
      for (const item of items) {
        if (!isPyObject(item)) continue
        count++
        if (preview !== undefined) continue
        const fmt = typeof item.format === 'string' ? item.format : ''
        const fname = typeof item.filename === 'string' ? item.filename.toLowerCase() : ''
        const previewable =
          PREVIEWABLE.has(mediaType) ||
          fmt.startsWith('video/') ||
          fmt.startsWith('audio/') ||
          THREE_D.some((e) => fname.endsWith(e))
        if (!previewable) continue
        const enriched = { ...item, nodeId, mediaType }
        if (item.type === 'output') preview = enriched
        else if (fallback === undefined) fallback = enriched
      }
    }
  }
  return [count, preview ?? fallback]
}

function historyJob(promptId: string, h: HistoryEntry, full: boolean): PyObject {
  const [priority, , prompt, extraData] = h.prompt
  const m = meta(extraData ?? null)
  const status = isPyObject(h.status) ? h.status : {}
  const statusStr = status.status_str
  let start: PyValue | undefined
  let end: PyValue | undefined
  let error: PyValue | undefined
  for (const e of Array.isArray(status.messages) ? status.messages : []) {
    if (!Array.isArray(e) || e.length < 2 || !isPyObject(e[1])) continue
    const [name, data] = e as [PyValue, PyObject]
    if (name === 'execution_start') start = data.timestamp
    else if (name === 'execution_success' || name === 'execution_error' || name === 'execution_interrupted') {
      end = data.timestamp
      if (name === 'execution_error') error = data
    }
  }
  const [count, preview] = outputsSummary(h.outputs)
  const job = prune({
    id: promptId,
    status: statusStr === 'error' ? 'failed' : 'completed',
    priority,
    create_time: m.createTime,
    execution_start_time: start,
    execution_end_time: end,
    execution_error: error,
    outputs_count: count,
    preview_output: preview,
    workflow_id: m.workflowId,
  })
  if (full) {
    job.outputs = h.outputs
    job.execution_status = h.status
    job.workflow = { prompt: prompt ?? null, extra_data: extraData ?? null }
  }
  return job
}

type JobsResult = { status: number; body: PyValue }

/** GET /api/jobs with its query parameters. */
export function listJobs(
  query: URLSearchParams,
  running: QueueItem[],
  pending: QueueItem[],
  history: Map<string, HistoryEntry>,
): JobsResult {
  const bad = (error: string): JobsResult => ({ status: 400, body: { error } })
  const statusParam = query.get('status')
  const sortBy = (query.get('sort_by') ?? 'created_at').toLowerCase()
  const sortOrder = (query.get('sort_order') ?? 'desc').toLowerCase()
  let filter: string[] = [...JOB_STATUSES]
  if (statusParam) {
    filter = statusParam
      .split(',')
      .map((s) => s.trim().toLowerCase())
      .filter((s) => s.length > 0)
    const invalid = filter.filter((s) => !(JOB_STATUSES as readonly string[]).includes(s))
    if (invalid.length > 0) {
      return bad(`Invalid status value(s): ${invalid.join(', ')}. Valid values: ${JOB_STATUSES.join(', ')}`)
    }
  }
  if (sortBy !== 'created_at' && sortBy !== 'execution_duration') {
    return bad("sort_by must be 'created_at' or 'execution_duration'")
  }
  if (sortOrder !== 'asc' && sortOrder !== 'desc') return bad("sort_order must be 'asc' or 'desc'")
  const pyIntParse = (s: string): number | undefined =>
    /^\s*[-+]?\d+\s*$/.test(s) ? Number.parseInt(s, 10) : undefined
  let limit: number | null = null
  if (query.has('limit')) {
    const l = pyIntParse(query.get('limit')!)
    if (l === undefined) return bad('limit must be an integer')
    if (l <= 0) return bad('limit must be a positive integer')
    limit = l
  }
  let offset = 0
  if (query.has('offset')) {
    const o = pyIntParse(query.get('offset')!)
    if (o === undefined) return bad('offset must be an integer')
    offset = Math.max(0, o)
  }
  let jobs: PyObject[] = []
  if (filter.includes('in_progress')) for (const it of running) jobs.push(queueJob(it, 'in_progress'))
  if (filter.includes('pending')) for (const it of pending) jobs.push(queueJob(it, 'pending'))
  const inclCompleted = filter.includes('completed')
  const inclFailed = filter.includes('failed')
  if (inclCompleted || inclFailed) {
    for (const [id, h] of history) {
      const failed = isPyObject(h.status) && h.status.status_str === 'error'
      if ((failed && inclFailed) || (!failed && inclCompleted)) jobs.push(historyJob(id, h, false))
    }
  }
  const workflowId = query.get('workflow_id')
  if (workflowId) jobs = jobs.filter((j) => j.workflow_id === workflowId)
  const n = (v: PyValue | undefined): number => (typeof v === 'number' ? v : 0)
  const key =
    sortBy === 'execution_duration'
      ? (j: PyObject): number => {
          const s = n(j.execution_start_time)
          const e = n(j.execution_end_time)
          return s && e ? e - s : 0
        }
      : (j: PyObject): number => n(j.create_time)
  jobs = jobs
    .map((j, i) => ({ j, i, k: key(j) }))
    .sort((a, b) => (sortOrder === 'desc' ? b.k - a.k : a.k - b.k) || a.i - b.i)
    .map((x) => x.j)
  const total = jobs.length
  if (offset > 0) jobs = jobs.slice(offset)
  if (limit !== null) jobs = jobs.slice(0, limit)
  return {
    status: 200,
    body: { jobs, pagination: { offset, limit, total, has_more: offset + jobs.length < total } },
  }
}

/** GET /api/jobs/{id}. */
export function getJob(
  id: string,
  running: QueueItem[],
  pending: QueueItem[],
  history: Map<string, HistoryEntry>,
): JobsResult {
  const h = history.get(id)
  if (h) return { status: 200, body: historyJob(id, h, true) }
  const r = running.find((it) => it.promptId === id)
  if (r) return { status: 200, body: queueJob(r, 'in_progress') }
  const p = pending.find((it) => it.promptId === id)
  if (p) return { status: 200, body: queueJob(p, 'pending') }
  return { status: 404, body: { error: 'Job not found' } }
}
