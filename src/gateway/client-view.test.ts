import { readFileSync } from 'node:fs'
import { describe, expect, it } from 'vitest'
import { parseJson } from '../audit/json.js'
import { SUBMISSION_SEAL_KEY } from '../capture/submission-seal.js'
import { namespacedClientId, noClientId } from './client-ids.js'
import {
  clientViewRoute,
  historyEntries,
  jobListLookups,
  rewriteHistoryAnswer,
  rewriteJobAnswer,
  rewriteJobListAnswer,
  rewriteQueueAnswer,
} from './client-view.js'
import { objectMembers, skipSpace } from './json-members.js'

const TRACE = new URL('../../fixtures/comfyui-0.8.0/trace.jsonl', import.meta.url)

/** One recorded HTTP exchange, with ComfyUI's answer as the text it sent. */
interface Exchange {
  readonly scenario: string
  readonly path: string
  readonly text: string
}

function loadExchanges(): Exchange[] {
  const out: Exchange[] = []
  for (const line of readFileSync(TRACE, 'utf8').split('\n')) {
    if (line.trim() === '') continue
    const row = parseJson(line)
    if (!row.ok) throw new Error(row.reason)
    const r = row.value as Record<string, unknown>
    if (r['kind'] !== 'http' || r['method'] !== 'GET' || r['status'] !== 200) continue
    // The recorder wrote each answer with Python's json.dumps, as ComfyUI does: take its bytes, not a re-serialisation.
    const response = objectMembers(line, skipSpace(line, 0)).find((m) => m.key === 'response')
    if (!response) continue
    out.push({
      scenario: String(r['scenario']),
      path: String(r['path']),
      text: line.slice(response.valueStart, response.valueEnd),
    })
  }
  return out
}

const exchanges = loadExchanges()
const USER = 'alice'
const NOCLIENT = noClientId(USER)
/** The prompt `queue_and_clients` sent without a client id. */
const NOCLIENT_PROMPT = '64a78578-f02b-4f1c-8a25-e4153624879f'
const NOCLIENT_CREATE_TIME = '1795665250742'

function answer(path: string, scenario?: string): string {
  const e = exchanges.find((x) => x.path === path && (scenario === undefined || x.scenario === scenario))
  if (!e) throw new Error(`no recorded answer for ${path}`)
  return e.text
}

/** What ComfyUI shows behind the gateway: every client's id namespaced. */
function namespaced(text: string): string {
  return text.replace(
    /"client_id": "([^"\\]*)"/g,
    (_all, id: string) => `"client_id": ${JSON.stringify(namespacedClientId(USER, id))}`,
  )
}

/** The no-client prompt behind the gateway: ComfyUI got an id (after extra_pnginfo, before create_time). */
function withInjectedId(text: string): string {
  const original = `"create_time": ${NOCLIENT_CREATE_TIME}}`
  expect(text).toContain(original)
  return text.replaceAll(original, `"client_id": "${NOCLIENT}", ${original}`)
}

/** The recorded UI and meta of cached PreviewImage node 6 in a sibling prompt of the same graph. */
function cachedPreviewOfSibling(): { output: string; meta: string } {
  const text = answer('/history/17813279-db48-45e0-bc63-e502347fcacc')
  const entry = objectMembers(text, 0)[0]!
  const part = (key: string): string => {
    const m = objectMembers(text, entry.valueStart).find((x) => x.key === key)!
    const six = objectMembers(text, m.valueStart).find((x) => x.key === '6')!
    return text.slice(six.valueStart, six.valueEnd)
  }
  return { output: part('outputs'), meta: part('meta') }
}

/**
 * The no-client prompt's history entry as ComfyUI writes it behind the gateway: with the injected id, and
 * with the cached node 6 in outputs and meta (first, as cached nodes run first).
 */
function noClientEntryBehindGateway(text: string): string {
  const six = cachedPreviewOfSibling()
  let out = withInjectedId(text)
  const entryAt = out.indexOf(`"${NOCLIENT_PROMPT}": {"prompt": [`)
  expect(entryAt).toBeGreaterThanOrEqual(0)
  for (const [key, first, inserted] of [
    ['outputs', '"5": {"images": [{"filename": "q-none_00001_.png"', six.output],
    ['meta', '"5": {"node_id": "5"', six.meta],
  ] as const) {
    const at = out.indexOf(`"${key}": {${first}`, entryAt) + `"${key}": {`.length
    expect(at).toBeGreaterThan(entryAt + key.length)
    out = `${out.slice(0, at)}"6": ${inserted}, ${out.slice(at)}`
  }
  return out
}

function rewrite(fn: (b: Buffer) => Buffer, text: string): string {
  return fn(Buffer.from(text, 'utf8')).toString('utf8')
}

describe('clientViewRoute', () => {
  it('matches both spellings of the history, queue and jobs GET routes and nothing else', () => {
    expect(clientViewRoute('GET', '/history')).toBe('history')
    expect(clientViewRoute('GET', '/api/history')).toBe('history')
    expect(clientViewRoute('GET', '/history/abc-1')).toBe('history')
    expect(clientViewRoute('GET', '/api/history/abc-1')).toBe('history')
    expect(clientViewRoute('GET', '/queue')).toBe('queue')
    expect(clientViewRoute('GET', '/api/queue')).toBe('queue')
    expect(clientViewRoute('GET', '/api/jobs')).toBe('jobs')
    expect(clientViewRoute('GET', '/api/api/jobs')).toBe('jobs')
    expect(clientViewRoute('GET', '/api/jobs/abc')).toBe('job')
    expect(clientViewRoute('GET', '/api/api/jobs/abc')).toBe('job')
    expect(clientViewRoute('POST', '/history')).toBeNull()
    expect(clientViewRoute('GET', '/jobs')).toBeNull()
    expect(clientViewRoute('GET', '/jobs/abc')).toBeNull()
    expect(clientViewRoute('GET', '/api/api/history')).toBeNull()
    expect(clientViewRoute('GET', '/history/a/b')).toBeNull()
    expect(clientViewRoute('GET', '/queue/x')).toBeNull()
    expect(clientViewRoute('GET', '/prompt')).toBeNull()
  })
})

describe('client ids in recorded answers', () => {
  const candidates = exchanges.filter((e) => clientViewRoute('GET', e.path.split('?')[0]!) !== null)
  const rewriters = {
    history: rewriteHistoryAnswer,
    queue: rewriteQueueAnswer,
    job: rewriteJobAnswer,
    jobs: (b: Buffer) => b,
  }

  it('finds recorded answers with client ids to work on', () => {
    expect(candidates.filter((e) => e.text.includes('"client_id": "')).length).toBeGreaterThan(30)
  })

  it.each(candidates.map((e) => [e.scenario, e.path, e] as const))(
    'gives back the exact recorded bytes of %s GET %s once ids are namespaced',
    (_s, _p, e) => {
      const route = clientViewRoute('GET', e.path.split('?')[0]!)!
      const behind = namespaced(e.text)
      if (e.text.includes('"client_id": "')) expect(behind).not.toBe(e.text)
      expect(rewrite(rewriters[route], behind)).toBe(e.text)
    },
  )

  it.each(
    candidates
      .filter((e) => clientViewRoute('GET', e.path.split('?')[0]!) !== 'jobs')
      .map((e) => [e.scenario, e.path, e] as const),
  )('takes the gateway seal out of %s GET %s (issue 10 item 2)', (_s, _p, e) => {
    const route = clientViewRoute('GET', e.path.split('?')[0]!)!
    // ComfyUI writes create_time last in extra_data; the seal sits before it.
    const behind = namespaced(e.text).replace(
      /"create_time": (\d+)\}/g,
      `"${SUBMISSION_SEAL_KEY}": {"v": 1, "origin": "o", "seal": "AAAA"}, "create_time": $1}`,
    )
    expect(rewrite(rewriters[route], behind)).toBe(e.text)
  })

  it('takes out the seal and the injected id together, wherever they sit', () => {
    const seal = `"${SUBMISSION_SEAL_KEY}": {"v": 1, "origin": "o", "seal": "AAAA"}`
    const cases: [string, string][] = [
      [`{${seal}, "client_id": "${NOCLIENT}", "create_time": 1}`, '{"create_time": 1}'],
      [`{"a": 1, "client_id": "${NOCLIENT}", ${seal}}`, '{"a": 1}'],
      [`{${seal}}`, '{}'],
      [`{"client_id": "foreign", ${seal}}`, '{"client_id": "foreign"}'],
      [`{${seal}, "client_id": ${JSON.stringify(namespacedClientId(USER, 'tab'))}}`, '{"client_id": "tab"}'],
    ]
    for (const [extra, shown] of cases) {
      expect(
        rewrite(rewriteQueueAnswer, `{"queue_running": [[0, "p", {}, ${extra}, []]], "queue_pending": []}`),
      ).toBe(`{"queue_running": [[0, "p", {}, ${shown}, []]], "queue_pending": []}`)
    }
  })

  it('leaves ids the gateway did not make alone', () => {
    const text = answer('/history/fixed-3189cedb6bec')
    expect(rewrite(rewriteHistoryAnswer, text)).toBe(text)
    const buf = Buffer.from(text, 'utf8')
    expect(rewriteHistoryAnswer(buf)).toBe(buf)
  })

  it('writes a client id with non-ASCII characters the way Python escapes it', () => {
    const body = `{"p": {"prompt": [1, "p", {}, {"client_id": "${namespacedClientId(USER, 'caf\\u00e9 \\"x\\"')}"}, []]}}`
    expect(rewrite(rewriteHistoryAnswer, body)).toBe(
      '{"p": {"prompt": [1, "p", {}, {"client_id": "caf\\u00e9 \\"x\\""}, []]}}',
    )
    // Escaped differently than Python would (raw UTF-8): written afresh, as Python would.
    const raw = `{"p": {"prompt": [1, "p", {}, {"client_id": "\\u0075${namespacedClientId(USER, 'café').slice(1)}"}, []]}}`
    expect(rewrite(rewriteHistoryAnswer, raw)).toBe(
      '{"p": {"prompt": [1, "p", {}, {"client_id": "caf\\u00e9"}, []]}}',
    )
  })

  it('passes anything that is not a ComfyUI answer unchanged', () => {
    for (const text of ['', '[]', '{"a": ', 'null', '{"p": {"prompt": "x"}}', '\u00ff{']) {
      const buf = Buffer.from(text, 'utf8')
      expect(rewriteHistoryAnswer(buf)).toBe(buf)
      expect(rewriteQueueAnswer(buf)).toBe(buf)
      expect(rewriteJobAnswer(buf)).toBe(buf)
      expect(rewriteJobListAnswer(buf, new Map())).toBe(buf)
      expect(jobListLookups(buf)).toEqual([])
    }
    const invalidUtf8 = Buffer.from([0x7b, 0xff, 0x7d])
    expect(rewriteHistoryAnswer(invalidUtf8)).toBe(invalidUtf8)
  })
})

describe('a prompt sent without client id', () => {
  it('shows its queue item without client_id, as ComfyUI does', () => {
    const real = exchanges.filter((e) => e.path === '/queue' && e.text.includes(NOCLIENT_PROMPT))
    expect(real.length).toBeGreaterThan(0)
    for (const e of real) {
      const behind = withInjectedId(namespaced(e.text))
      expect(behind).toContain(NOCLIENT)
      expect(rewrite(rewriteQueueAnswer, behind)).toBe(e.text)
    }
  })

  it('shows its history entry without client_id and without the UI of cached output nodes', () => {
    const real = answer(`/history/${NOCLIENT_PROMPT}`)
    const behind = noClientEntryBehindGateway(real)
    expect(behind).toContain('"6": {"images"')
    expect(rewrite(rewriteHistoryAnswer, behind)).toBe(real)
  })

  it('does the same for that entry inside the full /history, next to entries of clients with ids', () => {
    const real = answer('/history', 'final')
    const behind = noClientEntryBehindGateway(namespaced(real))
    expect(rewrite(rewriteHistoryAnswer, behind)).toBe(real)
  })

  it('keeps nodes that ran (not cached) in outputs and meta', () => {
    // Everything ran: nothing listed as cached, so the injected id is all that goes.
    const real = answer('/history/fixed-3189cedb6bec')
    const behind = real.replace('"client_id": "client-a-c1a13554"', `"client_id": "${NOCLIENT}"`)
    const expected = real.replace(', "client_id": "client-a-c1a13554"', '')
    expect(expected).not.toBe(real)
    expect(rewrite(rewriteHistoryAnswer, behind)).toBe(expected)
  })

  it('drops cached outputs from /api/jobs/{id} and recomputes outputs_count and preview_output', () => {
    // Fully cached run: every output node is listed in execution_cached.
    const id = '8fee2052-b039-4369-ace2-6a56bcd5f6e5'
    const real = answer(`/api/jobs/${id}`)
    const behind = real.replace('"client_id": "client-a-c1a13554"', `"client_id": "${NOCLIENT}"`)
    expect(behind).not.toBe(real)
    const out = rewrite(rewriteJobAnswer, behind)
    const expected = real
      .replace(', "client_id": "client-a-c1a13554"', '')
      .replace(/"outputs_count": 2, "preview_output": \{[^}]*\}, /, '"outputs_count": 0, ')
      .replace(/"outputs": \{"5": .*?\]\}, "6": .*?\]\}\}, /, '"outputs": {}, ')
    expect(expected).toContain('"outputs_count": 0, "outputs": {}, "execution_status"')
    expect(out).toBe(expected)
  })

  it('picks the next preview when the cached one goes, as ComfyUI would', () => {
    const job = (outputs: string, count: number, preview: string): string =>
      `{"id": "p", "status": "completed", "priority": 3, "outputs_count": ${count}, ` +
      (preview === '' ? '' : `"preview_output": ${preview}, `) +
      `"outputs": ${outputs}, "execution_status": {"status_str": "success", "completed": true, "messages": ` +
      `[["execution_cached", {"nodes": ["6", "9"], "prompt_id": "p", "timestamp": 1}]]}, ` +
      `"workflow": {"prompt": {}, "extra_data": {"client_id": "${NOCLIENT}", "create_time": 1.0}}}`
    const temp6 = '{"filename": "t.png", "subfolder": "", "type": "temp"}'
    const saved6 = '{"filename": "a.png", "subfolder": "", "type": "output"}'
    const gif8 = '{"filename": "b.gif", "type": "temp"}'
    const out8 = '{"filename": "c.GLB", "nodeId": "old", "type": "output"}'
    // Cached SaveImage output first (the preview), a cached text node, then a node that ran.
    const behind = job(
      `{"6": {"images": [${saved6}], "animated": [true]}, "9": {"text": ["x", {"filename": "y.txt"}]}, "8": {"gifs": [${gif8}], "3d": [${out8}]}}`,
      4,
      saved6.replace('}', ', "nodeId": "6", "mediaType": "images"}'),
    )
    const expected = job(
      `{"8": {"gifs": [${gif8}], "3d": [${out8}]}}`,
      2,
      '{"filename": "c.GLB", "nodeId": "8", "type": "output", "mediaType": "3d"}',
    ).replace(`"client_id": "${NOCLIENT}", `, '')
    expect(rewrite(rewriteJobAnswer, behind)).toBe(expected)

    // A fallback preview (temp) that goes gives way to the next previewable item.
    const fallback = job(
      `{"6": {"images": [${temp6}]}, "7": {"video": [{"filename": "v.mp4", "type": "temp"}]}}`,
      2,
      temp6.replace('}', ', "nodeId": "6", "mediaType": "images"}'),
    )
    expect(rewrite(rewriteJobAnswer, fallback)).toBe(
      job(
        '{"7": {"video": [{"filename": "v.mp4", "type": "temp"}]}}',
        1,
        '{"filename": "v.mp4", "type": "temp", "nodeId": "7", "mediaType": "video"}',
      ).replace(`"client_id": "${NOCLIENT}", `, ''),
    )

    // Nothing previewable left: preview_output goes (ComfyUI prunes None).
    const onlyCached = job(
      `{"6": {"images": [${temp6}]}}`,
      1,
      temp6.replace('}', ', "nodeId": "6", "mediaType": "images"}'),
    )
    expect(rewrite(rewriteJobAnswer, onlyCached)).toBe(
      job('{}', 0, '').replace(`"client_id": "${NOCLIENT}", `, ''),
    )
  })

  it('corrects outputs_count and preview_output of /api/jobs list items from their history entries', () => {
    const real = answer('/api/jobs', 'final')
    const history = noClientEntryBehindGateway(namespaced(answer('/history', 'final')))
    // Behind the gateway ComfyUI counts the cached preview too.
    const item = `{"id": "${NOCLIENT_PROMPT}", "status": "completed"`
    const at = real.indexOf(item)
    expect(at).toBeGreaterThan(0)
    const countAt = real.indexOf('"outputs_count": 1', at)
    const behind =
      real.slice(0, countAt) + '"outputs_count": 2' + real.slice(countAt + '"outputs_count": 1'.length)
    const lookups = jobListLookups(Buffer.from(behind))
    expect(lookups).toContain(NOCLIENT_PROMPT)
    expect(lookups.length).toBeGreaterThan(10)
    const entries = historyEntries(Buffer.from(history))
    for (const id of lookups) expect(entries.has(id)).toBe(true)
    expect(rewrite((b) => rewriteJobListAnswer(b, entries), behind)).toBe(real)
    // Without entries there is nothing to go on.
    expect(rewrite((b) => rewriteJobListAnswer(b, new Map()), behind)).toBe(behind)
  })

  it('leaves a list item alone when the entry no longer matches it', () => {
    const entry =
      `{"prompt": [1, "p", {}, {"client_id": "${NOCLIENT}"}, []], "outputs": {"6": {"images": [{"filename": "a.png", "type": "temp"}]}}, ` +
      `"status": {"messages": [["execution_cached", {"nodes": ["6"]}]]}}`
    const list = '{"jobs": [{"id": "p", "outputs_count": 3, "preview_output": {"x": 1}}], "pagination": {}}'
    expect(rewrite((b) => rewriteJobListAnswer(b, new Map([['p', entry]])), list)).toBe(list)
    const matching = list.replace('3', '1')
    expect(rewrite((b) => rewriteJobListAnswer(b, new Map([['p', entry]])), matching)).toBe(
      '{"jobs": [{"id": "p", "outputs_count": 0}], "pagination": {}}',
    )
  })
})
