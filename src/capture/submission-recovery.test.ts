/**
 * Issue 10 item 2 (nothing acknowledged is dropped, across a crash) and item 3 (no silent lost): the sealed
 * attribution the gateway puts in `extra_data`, and what reconciliation rebuilds from ComfyUI's copy of it.
 * The history entry and queue are the recorded ComfyUI 0.8 answers, with the seal a gateway would have added.
 */
import { randomBytes } from 'node:crypto'
import { describe, expect, it } from 'vitest'
import type { AuditEventInput, JsonObject, JsonValue, Submitter } from '../audit/types.js'
import { parseJson, stringifyJson } from '../audit/json.js'
import { createCapture } from './capture.js'
import { isJsonObject } from '../comfyui/schemas.js'
import {
  SUBMISSION_SEAL_KEY,
  createSubmissionSeal,
  promptDigest,
  sealSecretFromSigner,
  withoutSeal,
  type SubmissionSeal,
} from './submission-seal.js'
import { generateKey, parseSignerKey } from '../ledger/signed-note.js'
import { fixtureTraceRows } from '../../test/helpers/fixture-trace.js'

const ROWS = fixtureTraceRows()
const ID = 'fixed-3189cedb6bec'
const historyRow = ROWS.find((r) => r.kind === 'http' && r.path === `/history/${ID}`)
const ENTRY = (historyRow?.response as JsonObject)[ID] as JsonObject

const ALICE: Submitter = {
  user: 'alice',
  auth_method: 'token',
  client_address: '10.0.0.2',
  user_agent: 'test-agent',
  client_id: 'tab-1',
}

function newSeal(origin = 'studio'): SubmissionSeal {
  const signer = parseSignerKey(generateKey(origin).signerKey)
  if (!signer.ok) throw new Error(signer.reason)
  return createSubmissionSeal({ origin, secret: sealSecretFromSigner(signer.value) })
}

/** The recorded history entry as ComfyUI would hold it had `seal` forwarded it (for `id`). */
function sealedEntry(seal: SubmissionSeal, id = ID, sealFor = id, digested = true): JsonObject {
  const tuple = ENTRY.prompt as JsonValue[]
  const sealText = seal.seal(sealFor, {
    submitter: ALICE,
    upstream_client_id: 'u-000000000000~tab-1',
    submitted_at_ms: 1_795_665_000_000,
    prompt_digest: digested ? promptDigest(tuple[2]) : null,
  })
  const parsed = parseJson(sealText)
  if (!parsed.ok) throw new Error(parsed.reason)
  const extra = { [SUBMISSION_SEAL_KEY]: parsed.value, ...(tuple[3] as JsonObject) }
  return { ...ENTRY, prompt: [tuple[0]!, id, tuple[2]!, extra, tuple[4] ?? []] }
}

function harness(seal: SubmissionSeal | undefined) {
  const events: AuditEventInput[] = []
  const errors: unknown[] = []
  const capture = createCapture({
    origin: 'studio',
    now: () => 1_795_665_100_000,
    emit: (batch) => events.push(...batch),
    onError: (err) => errors.push(err),
    gpuSampleIntervalMillis: 0,
    ...(seal ? { submissionSeal: seal } : {}),
  })
  return { capture, events, errors }
}

function row(events: readonly AuditEventInput[], id: string): JsonObject {
  const out: JsonObject = {}
  for (const e of events)
    if (e.session_id === id && isJsonObject(e.payload.session)) Object.assign(out, e.payload.session)
  return out
}

const EMPTY_QUEUE = { queue_running: [], queue_pending: [] }

describe('submission seal', () => {
  it('opens only for its prompt id, its origin and its key', () => {
    const seal = newSeal()
    const claim = { submitter: ALICE, upstream_client_id: 'u~x', submitted_at_ms: 5, prompt_digest: 'd' }
    const value = parseJson(seal.seal('p1', claim))
    if (!value.ok) throw new Error(value.reason)
    expect(seal.open(value.value, 'p1')).toEqual({ ok: true, claim })
    // Copied onto another prompt: the id is authenticated data.
    expect(seal.open(value.value, 'p2')).toMatchObject({ ok: false, kind: 'invalid' })
    // Another gateway's key, same origin name: does not open.
    expect(newSeal().open(value.value, 'p1')).toMatchObject({ ok: false, kind: 'invalid' })
    expect(newSeal('other').open(value.value, 'p1')).toMatchObject({ ok: false, kind: 'foreign' })
    expect(seal.open(undefined, 'p1')).toMatchObject({ ok: false, kind: 'absent' })
    // One flipped bit anywhere in the sealed bytes.
    const sealed = Buffer.from((value.value as { seal: string }).seal, 'base64url')
    sealed[20] = sealed[20]! ^ 1
    const tampered = { ...(value.value as JsonObject), seal: sealed.toString('base64url') }
    expect(seal.open(tampered, 'p1')).toMatchObject({ ok: false, kind: 'invalid' })
    // The person and address are not readable from what ComfyUI shows.
    expect(JSON.stringify(value.value)).not.toMatch(/alice|10\.0\.0\.2/)
  })

  it('derives one key per signing key, the same every time', () => {
    const signer = parseSignerKey(generateKey('o').signerKey)
    if (!signer.ok) throw new Error(signer.reason)
    expect(sealSecretFromSigner(signer.value)).toEqual(sealSecretFromSigner(signer.value))
    const other = parseSignerKey(generateKey('o').signerKey)
    if (!other.ok) throw new Error(other.reason)
    expect(sealSecretFromSigner(other.value)).not.toEqual(sealSecretFromSigner(signer.value))
    expect(() => createSubmissionSeal({ origin: 'o', secret: randomBytes(16) })).toThrow(/32 bytes, got 16/)
  })

  it('digests a graph the same however it was serialised', () => {
    expect(promptDigest({ a: { x: 1.0, y: 'z' } })).toBe(promptDigest({ a: { y: 'z', x: 1 } }))
    expect(promptDigest({ a: 1 })).not.toBe(promptDigest({ a: 2 }))
    expect(withoutSeal({ [SUBMISSION_SEAL_KEY]: 1, b: 2 })).toEqual({ b: 2 })
    const read = parseJson('{"comfy_audit": 1, "cfg": 1.0, "scale": 1e5}')
    if (!read.ok) throw new Error(read.reason)
    // Number spellings survive, as everywhere in the record (issue 10 item 12).
    expect(stringifyJson(withoutSeal(read.value)!)).toBe('{"cfg":1.0,"scale":1e5}')
  })
})

describe('issue 10 item 2: prompt.submitted rebuilt from what ComfyUI holds', () => {
  it('rebuilds a lost prompt.submitted from the seal in a history entry, marked recovered', async () => {
    const seal = newSeal()
    const { capture, events } = harness(seal)
    capture.reconcile({ history: { [ID]: sealedEntry(seal) }, queue: EMPTY_QUEUE, detectBypass: true })
    await capture.flush()
    const submitted = events.filter((e) => e.session_id === ID && e.kind === 'prompt.submitted')
    expect(submitted).toHaveLength(1)
    expect(submitted[0]!.time).toBe(new Date(1_795_665_000_000).toISOString())
    expect(submitted[0]!.payload).toMatchObject({
      recovered: true,
      evidence: { source: 'comfyui_history', prompt_digest_matches: true, comfyui_number: 0 },
    })
    expect(events.map((e) => e.kind)).toEqual(
      expect.arrayContaining(['prompt.submitted', 'prompt.accepted', 'session.reconciled']),
    )
    expect(events.some((e) => e.kind === 'session.bypass')).toBe(false)
    const session = row(events, ID)
    expect(session).toMatchObject({
      status: 'success',
      http_status: 200,
      client_id: 'u-000000000000~tab-1',
      submitter: { user: 'alice', client_address: '10.0.0.2', client_id: 'tab-1' },
      queued_at: new Date(1_795_665_000_000).toISOString(),
      flags: ['recovered', 'reconciled'],
    })
    // The seal is not part of the recorded extra_data; the rest of ComfyUI's copy is.
    expect(session.extra_data).not.toHaveProperty(SUBMISSION_SEAL_KEY)
    expect(session.extra_data).toHaveProperty('extra_pnginfo')
    // Rebuilt once: a second sweep over the same history adds nothing.
    const before = events.length
    capture.reconcile({ history: { [ID]: sealedEntry(seal) }, queue: EMPTY_QUEUE, detectBypass: true })
    await capture.flush()
    expect(events.length).toBe(before)
  })

  it('rebuilds it from the queue and keeps the session open for the run to come', async () => {
    const seal = newSeal()
    const { capture, events } = harness(seal)
    const tuple = sealedEntry(seal).prompt as JsonValue[]
    capture.reconcile({
      history: {},
      queue: { queue_running: [], queue_pending: [tuple] },
      detectBypass: true,
    })
    await capture.flush()
    expect(events.map((e) => e.kind)).toEqual(['prompt.submitted', 'prompt.accepted'])
    expect(events[0]!.payload).toMatchObject({
      evidence: { source: 'comfyui_queue', queue_position: 'queue_pending' },
    })
    expect(capture.openSessions()).toMatchObject([{ session_id: ID, accepted: true, status: 'queued' }])
    // When it is done, history closes it, once.
    capture.reconcile({ history: { [ID]: sealedEntry(seal) }, queue: EMPTY_QUEUE, detectBypass: true })
    await capture.flush()
    expect(events.filter((e) => e.kind === 'prompt.submitted')).toHaveLength(1)
    expect(row(events, ID).status).toBe('success')
  })

  it.each([
    ['a seal made with another key', () => sealedEntry(newSeal())],
    [
      "a copy of this gateway's seal for another prompt",
      (own: SubmissionSeal) => sealedEntry(own, ID, 'other'),
    ],
  ])('records %s as a bypass with the seal rejected, never as the person it names', async (_, entry) => {
    const seal = newSeal()
    const { capture, events } = harness(seal)
    capture.reconcile({ history: { [ID]: entry(seal) }, queue: EMPTY_QUEUE, detectBypass: true })
    await capture.flush()
    expect(events.some((x) => x.kind === 'prompt.submitted')).toBe(false)
    const bypass = events.find((x) => x.kind === 'session.bypass')
    expect(bypass?.payload.seal_rejected).toMatch(/does not open/)
    expect(row(events, ID)).toMatchObject({ submitter: null, flags: ['bypass', 'seal_rejected'] })
  })

  it('gives no attribution to a sealed id queued again with another graph', async () => {
    const seal = newSeal()
    const { capture, events } = harness(seal)
    const entry = sealedEntry(seal)
    const tuple = entry.prompt as JsonValue[]
    const graph = { ...(tuple[2] as JsonObject), 99: { class_type: 'SaveImage', inputs: {} } }
    capture.reconcile({
      history: { [ID]: { ...entry, prompt: [tuple[0]!, ID, graph, tuple[3]!, tuple[4]!] } },
      queue: EMPTY_QUEUE,
      detectBypass: true,
    })
    await capture.flush()
    expect(events.some((x) => x.kind === 'prompt.submitted')).toBe(false)
    expect(events.find((x) => x.kind === 'session.bypass')?.payload.seal_rejected).toMatch(/another graph/)
  })

  it('recovers a prompt sealed without a digest (too large to digest), saying the graph is not bound', async () => {
    const seal = newSeal()
    const { capture, events } = harness(seal)
    capture.reconcile({
      history: { [ID]: sealedEntry(seal, ID, ID, false) },
      queue: EMPTY_QUEUE,
      detectBypass: true,
    })
    await capture.flush()
    const submitted = events.find((e) => e.kind === 'prompt.submitted')
    expect(submitted?.payload).toMatchObject({ recovered: true, evidence: { prompt_digest_matches: null } })
    expect(row(events, ID)).toMatchObject({ status: 'success', submitter: { user: 'alice' } })
  })

  it('leaves alone a seal of another origin and prompts it already knows', async () => {
    const seal = newSeal()
    const { capture, events } = harness(seal)
    capture.loadKnownPromptIds([ID])
    capture.reconcile({ history: { [ID]: sealedEntry(seal) }, queue: EMPTY_QUEUE, detectBypass: true })
    const other = harness(seal)
    other.capture.reconcile({
      history: { [ID]: sealedEntry(newSeal('elsewhere')) },
      queue: EMPTY_QUEUE,
      detectBypass: true,
    })
    await capture.flush()
    await other.capture.flush()
    expect(events).toEqual([])
    expect(other.events.map((e) => e.kind)).toEqual(['session.bypass'])
    expect(other.events[0]!.payload.seal_rejected).toBeUndefined()
  })
})

describe('issue 10 item 3: a lost session that history shows finished is corrected', () => {
  it('records session.corrected from history for a session closed as lost in this process', async () => {
    const seal = newSeal()
    const { capture, events } = harness(seal)
    const body = Buffer.from(JSON.stringify({ prompt: (ENTRY.prompt as JsonValue[])[2], client_id: 'tab-1' }))
    capture.promptSubmitted({
      promptId: ID,
      upstreamClientId: 'u-000000000000~tab-1',
      clientId: 'tab-1',
      body,
      forwardedBody: body,
      submitter: ALICE,
      timeMs: 1_795_665_000_000,
    })
    capture.promptAnswered({
      promptId: ID,
      status: 200,
      body: Buffer.from(JSON.stringify({ prompt_id: ID, number: 0, node_errors: {} })),
      timeMs: 1_795_665_000_010,
    })
    // A reading of queue and history that missed it (e.g. a history page not read yet).
    capture.reconcile({ history: {}, queue: EMPTY_QUEUE })
    await capture.flush()
    expect(row(events, ID).status).toBe('lost')
    capture.reconcile({ history: { [ID]: ENTRY }, queue: EMPTY_QUEUE, detectBypass: true })
    capture.reconcile({ history: { [ID]: ENTRY }, queue: EMPTY_QUEUE, detectBypass: true })
    await capture.flush()
    const corrected = events.filter((e) => e.kind === 'session.corrected')
    expect(corrected).toHaveLength(1)
    expect(corrected[0]!.payload).toMatchObject({ from: 'lost', to: 'success', source: 'history' })
    expect(row(events, ID)).toMatchObject({ status: 'success' })
    expect(events.some((e) => e.kind === 'session.bypass')).toBe(false)
  })

  it('corrects one the log held as lost before a restart', async () => {
    const { capture, events } = harness(undefined)
    capture.loadKnownPromptIds([ID])
    capture.loadLostSessionIds([ID])
    capture.reconcile({ history: { [ID]: ENTRY }, queue: EMPTY_QUEUE, detectBypass: true })
    await capture.flush()
    expect(events.map((e) => e.kind)).toEqual(['session.corrected'])
    expect(events[0]!.payload).toMatchObject({ to: 'success', source: 'history' })
    expect((events[0]!.payload.session as JsonObject).ended_at).toMatch(/^20\d\d-/)
  })
})
