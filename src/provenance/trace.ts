/**
 * Trace an image to the run that made it: by its SHA-256 in the outputs table (the run in which the
 * producing node actually ran, with later runs that reused it from cache), or, for a re-encoded copy, by
 * the prompt graph in its PNG `prompt` chunk (ignoring `is_changed`), matched against the recorded prompts.
 */
import { asJsonValue } from '../audit/json-value.js'
import { canonicalJson, parseJson, sha256Hex } from '../audit/json.js'
import type { JsonObject, JsonValue, SessionRecord } from '../audit/types.js'
import { promptGraphSha256 } from '../store/query-indexes.js'
import type { RuntimeStore } from '../store/runtime-store.js'
import { readPngMetadata } from './png-metadata.js'

/** Where an image came from. */
export interface TraceResult {
  readonly session_id: string
  readonly origin: string
  /** How it was found. */
  readonly match: 'sha256' | 'prompt'
  readonly sha256: string
  readonly producing_node: { readonly node_id: string; readonly node_type: string | null } | null
  readonly user: string | null
  readonly queued_at: string | null
  readonly status: string
  readonly models: JsonValue
  readonly seeds: JsonValue
  /** Text inputs of CLIPTextEncode-like nodes. */
  readonly prompts: { readonly node_id: string; readonly input: string; readonly text: string }[]
  readonly workflow: JsonValue | null
  readonly prompt_sha256: string | null
  /** Later runs that reused this output from ComfyUI's cache. */
  readonly reused_by: { readonly session_id: string; readonly origin: string; readonly time: string }[]
}

type TraceOutcome = { ok: true; value: TraceResult } | { ok: false; reason: string }

type TraceStore = Pick<RuntimeStore, 'outputsBySha256' | 'nodeRuns' | 'session' | 'sessions'>

function isObject(v: JsonValue | undefined): v is JsonObject {
  return typeof v === 'object' && v !== null && !Array.isArray(v)
}

function promptTexts(prompt: JsonValue | null): TraceResult['prompts'] {
  const out: { node_id: string; input: string; text: string }[] = []
  if (!isObject(prompt)) return out
  for (const [id, node] of Object.entries(prompt)) {
    if (!isObject(node) || typeof node.class_type !== 'string' || !/CLIPTextEncode/.test(node.class_type))
      continue
    if (!isObject(node.inputs)) continue
    for (const [name, v] of Object.entries(node.inputs)) {
      if (typeof v === 'string' && /^text/.test(name)) out.push({ node_id: id, input: name, text: v })
    }
  }
  return out
}

function describe(
  s: SessionRecord,
  match: 'sha256' | 'prompt',
  sha256: string,
  node: TraceResult['producing_node'],
  reused: TraceResult['reused_by'],
): TraceResult {
  return {
    session_id: s.session_id,
    origin: s.origin,
    match,
    sha256,
    producing_node: node,
    user: s.submitter?.user ?? null,
    queued_at: s.queued_at,
    status: s.status,
    models: asJsonValue(s.models),
    seeds: asJsonValue(s.seeds),
    prompts: promptTexts(s.prompt),
    workflow: s.workflow,
    prompt_sha256: s.prompt_sha256,
    reused_by: reused,
  }
}

/** Finds the run that produced `bytes`; see the module comment. */
export async function traceImage(store: TraceStore, bytes: Buffer): Promise<TraceOutcome> {
  const sha256 = sha256Hex(bytes)
  const byHash = await traceSha256(store, sha256)
  if (byHash !== null) return byHash
  return traceByPromptChunk(store, bytes, sha256)
}

/**
 * Finds the run that produced the file with this SHA-256 (lower-case hex) among the recorded outputs; null
 * when no recorded file has it (then only the PNG's own prompt chunk could tell).
 */
export async function traceSha256(store: TraceStore, sha256: string): Promise<TraceOutcome | null> {
  const all = await store.outputsBySha256(sha256)
  // Input images are indexed too (who loaded what), but a run that loaded a file did not produce it.
  const rows = all.filter((r) => r.type !== 'input')
  if (rows.length === 0 && all.length > 0) {
    const loaders = [...new Set(all.map((r) => r.session_id))]
    return {
      ok: false,
      reason: `SHA-256 ${sha256} is an input image, loaded by ${loaders.length} run(s) (${loaders.slice(0, 5).join(', ')}); no recorded run produced it`,
    }
  }
  if (rows.length > 0) {
    const candidates: { row: (typeof rows)[number]; status: string | null; type: string | null }[] = []
    for (const row of rows) {
      const runs = await store.nodeRuns({ sessionId: row.session_id, origin: row.origin })
      const run = runs.find((r) => r.node_id === row.node_id)
      candidates.push({ row, status: run?.status ?? null, type: run?.node_type ?? null })
    }
    candidates.sort((a, b) => (a.row.time < b.row.time ? -1 : a.row.time > b.row.time ? 1 : 0))
    const producer = candidates.find((c) => c.status === 'success') ?? candidates[0]!
    const session = await store.session(producer.row.session_id, producer.row.origin)
    if (!session)
      return { ok: false, reason: `output row names session ${producer.row.session_id}, which is not stored` }
    const reused = candidates
      .filter((c) => c !== producer && c.status === 'cached')
      .map((c) => ({ session_id: c.row.session_id, origin: c.row.origin, time: c.row.time }))
    return {
      ok: true,
      value: describe(
        session,
        'sha256',
        sha256,
        { node_id: producer.row.node_id, node_type: producer.type },
        reused,
      ),
    }
  }
  return null
}

async function traceByPromptChunk(store: TraceStore, bytes: Buffer, sha256: string): Promise<TraceOutcome> {
  const png = readPngMetadata(bytes)
  if (!png.ok)
    return {
      ok: false,
      reason: `no recorded output has SHA-256 ${sha256}, and the file is not a readable PNG (${png.reason})`,
    }
  const text = png.value.text.prompt
  if (text === undefined)
    return { ok: false, reason: `no recorded output has SHA-256 ${sha256}, and the PNG has no prompt chunk` }
  const parsed = parseJson(text)
  if (!parsed.ok) return { ok: false, reason: `the PNG prompt chunk is not JSON: ${parsed.reason}` }
  // Either hash names the graph: the exact prompt, or the prompt without `is_changed` (see query-indexes.ts).
  const matches = await store.sessions({
    prompt: {
      sha256: sha256Hex(canonicalJson(parsed.value)),
      graphSha256: promptGraphSha256(parsed.value) ?? '',
    },
  })
  if (matches.length === 0)
    return { ok: false, reason: `no recorded run has the prompt in this PNG (SHA-256 ${sha256})` }
  // Oldest first: the first run of a graph computes it; identical later runs come from cache.
  matches.sort((a, b) => ((a.queued_at ?? '') < (b.queued_at ?? '') ? -1 : 1))
  const producer = matches.find((s) => s.status === 'success') ?? matches[0]!
  const runs = await store.nodeRuns({ sessionId: producer.session_id, origin: producer.origin })
  const saver = runs.find(
    (r) => r.status === 'success' && r.outputs !== null && /Save/.test(r.node_type ?? ''),
  )
  const reused = matches
    .filter((s) => s !== producer)
    .map((s) => ({ session_id: s.session_id, origin: s.origin, time: s.queued_at ?? '' }))
  return {
    ok: true,
    value: describe(
      producer,
      'prompt',
      sha256,
      saver ? { node_id: saver.node_id, node_type: saver.node_type } : null,
      reused,
    ),
  }
}
