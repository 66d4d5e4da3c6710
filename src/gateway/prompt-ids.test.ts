/**
 * The registries the gateway claims prompt ids in: the in-memory default of a gateway without capture, and
 * capture itself. What ComfyUI holds under the gateway's ids (told by the socket hub) is taken for clients,
 * yet reconciliation still rebuilds its submission from the seal when the log lacks it.
 */
import { describe, expect, it } from 'vitest'
import type { AuditEventInput, Submitter } from '../audit/types.js'
import { parseJson } from '../audit/json.js'
import { createCapture } from '../capture/capture.js'
import { SUBMISSION_SEAL_KEY, createSubmissionSeal, promptDigest } from '../capture/submission-seal.js'
import { emptySession } from '../store/project.js'
import { namespacedClientId } from './client-ids.js'
import { memoryPromptIds, type PromptIdRegistry } from './prompt-ids.js'

const ALICE: Submitter = {
  user: 'alice',
  auth_method: 'token',
  client_address: '10.0.0.2',
  user_agent: 'test-agent',
  client_id: 'tab-1',
}
const GRAPH = { '1': { class_type: 'SaveImage', inputs: { images: ['2', 0] } } }

function captureRegistry(events: AuditEventInput[] = []) {
  const seal = createSubmissionSeal({ origin: 'studio', secret: Buffer.alloc(32, 7) })
  const capture = createCapture({
    origin: 'studio',
    now: () => 1_795_665_100_000,
    emit: (batch) => events.push(...batch),
    gpuSampleIntervalMillis: 0,
    submissionSeal: seal,
  })
  return { capture, seal }
}

describe.each<[string, () => PromptIdRegistry]>([
  ['the in-memory default', memoryPromptIds],
  ['capture', () => captureRegistry().capture],
])('%s as the registry', (_name, make) => {
  it('frees an id once, and never again after ComfyUI was seen holding it', () => {
    const ids = make()
    expect(ids.claimPromptId('a')).toBe(true)
    expect(ids.claimPromptId('a')).toBe(false)
    ids.notePromptIdHeld('b')
    expect(ids.claimPromptId('b')).toBe(false)
    ids.notePromptIdHeld('a')
    expect(ids.claimPromptId('a')).toBe(false)
    expect(ids.claimPromptId('c')).toBe(true)
  })
})

describe('capture as the one owner of prompt state', () => {
  it('knows a held id at once, yet rebuilds its lost submission from the seal, as for any unrecorded id', async () => {
    const events: AuditEventInput[] = []
    const { capture, seal } = captureRegistry(events)
    const upstream = namespacedClientId('alice', 'tab-1')
    const sealText = seal.seal('held', {
      submitter: ALICE,
      upstream_client_id: upstream,
      submitted_at_ms: 1_795_665_000_000,
      prompt_digest: promptDigest(GRAPH),
    })
    const sealValue = parseJson(sealText)
    if (!sealValue.ok) throw new Error(sealValue.reason)
    capture.notePromptIdHeld('held')
    expect(capture.isPromptIdKnown('held')).toBe(true)
    capture.reconcile({
      history: {},
      queue: {
        queue_running: [],
        queue_pending: [
          [3, 'held', GRAPH, { client_id: upstream, [SUBMISSION_SEAL_KEY]: sealValue.value }, []],
        ],
      },
      detectBypass: true,
    })
    await capture.flush()
    const submitted = events.filter((e) => e.kind === 'prompt.submitted' && e.session_id === 'held')
    expect(submitted).toHaveLength(1)
    expect(submitted[0]!.payload).toMatchObject({ recovered: true })
    expect(capture.claimPromptId('held')).toBe(false)
  })

  it('remembers the sessions it took back from a previous process as inherited', async () => {
    const { capture } = captureRegistry()
    expect(capture.isInheritedSession('old')).toBe(false)
    capture.resume([
      {
        session: {
          ...emptySession('studio', 'old'),
          client_id: namespacedClientId('alice', 'tab-1'),
          submitter: ALICE,
          queued_at: '2026-12-01T00:00:00.000Z',
        },
        nodeRuns: [],
        startedNodes: new Map(),
      },
    ])
    await capture.flush()
    expect(capture.isInheritedSession('old')).toBe(true)
    expect(capture.isPromptIdKnown('old')).toBe(true)
    expect(capture.openSessions().map((o) => [o.session_id, o.accepted])).toEqual([['old', false]])
  })
})
