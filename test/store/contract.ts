/**
 * The store contract, written once and run for every dialect (test/store/sqlite.test.ts, postgres.test.ts).
 */
import { afterEach, describe, expect, it } from 'vitest'
import type {
  AuditEvent,
  AuditEventInput,
  AuditEventKind,
  JsonObject,
  JsonValue,
  NodeRunRecord,
  SessionRecord,
} from '../../src/audit/types.js'
import { parseJson, stringifyJson } from '../../src/audit/json.js'
import { eventLeafHex } from '../../src/audit/event-leaf.js'
import { prepareAppend } from '../../src/store/append-batch.js'
import { emptySession, replayDerived } from '../../src/store/project.js'
import {
  createRuntimeStore,
  type RuntimeStore,
  type RuntimeStoreOptions,
} from '../../src/store/runtime-store.js'
import type { StoreDialect, StoreDriver } from '../../src/store/store.js'

/** How the contract gets a database. */
export interface StoreContractOptions {
  /**
   * True when drivers of one dialect share a database that outlives them (a file, a server): enables the
   * reopen and two-writers tests.
   */
  readonly persistent: boolean
}

const T0 = Date.parse('2026-01-01T00:00:00.000Z')

/** ISO time `seconds` after a fixed start. */
export function at(seconds: number): string {
  return new Date(T0 + seconds * 1000).toISOString()
}

/** An event input. */
export function input(
  kind: AuditEventKind,
  sessionId: string | null,
  payload: JsonObject = {},
  time: string = at(0),
): AuditEventInput {
  return { kind, time, session_id: sessionId, payload }
}

/** A complete node run record. */
export function nodeRun(
  sessionId: string,
  nodeId: string,
  overrides: Partial<NodeRunRecord> = {},
): NodeRunRecord {
  return {
    session_id: sessionId,
    node_id: nodeId,
    node_type: 'KSampler',
    timestamp_start: at(10),
    timestamp_end: at(12),
    duration_ms: 2000,
    inputs: { seed: 1, model: ['4', 0] },
    outputs: null,
    status: 'success',
    error_message: null,
    exception_type: null,
    traceback: null,
    gpu_memory_used: 5120,
    gpu_memory_torch: 4096.5,
    display_node: null,
    real_node_id: null,
    parent_node_id: null,
    progress: { value: 20, max: 20 },
    previews: 20,
    ...overrides,
  }
}

/** NodeRunRecord is a JSON-shaped record; the projection convention carries it in a payload. */
function asJson(value: object): JsonObject {
  return value as unknown as JsonObject
}

async function collect<T>(iterable: AsyncIterable<T>): Promise<T[]> {
  const out: T[] = []
  for await (const item of iterable) out.push(item)
  return out
}

/** A small but complete session: submitted, started, two nodes (one cached), an output hashed later. */
function sessionLifecycle(sessionId: string, user: string, startSeconds: number): AuditEventInput[] {
  const s = startSeconds
  return [
    input(
      'prompt.submitted',
      sessionId,
      {
        session: {
          status: 'queued',
          queued_at: at(s),
          submitter: {
            user,
            auth_method: 'token',
            client_address: '10.0.0.5',
            user_agent: 'test',
            client_id: 'c1',
          },
          prompt: { '3': { class_type: 'KSampler', inputs: { seed: 2n ** 64n - 1n } } },
          prompt_sha256: 'ab'.repeat(32),
          seeds: [{ node_id: '3', input_name: 'seed', value: 2n ** 64n - 1n }],
        },
      },
      at(s),
    ),
    input('prompt.accepted', sessionId, { session: { http_status: 200, number: 7 } }, at(s)),
    input(
      'execution.started',
      sessionId,
      { session: { status: 'running', started_at: at(s + 1) } },
      at(s + 1),
    ),
    input(
      'node.finished',
      sessionId,
      {
        node_run: asJson(
          nodeRun(sessionId, '4', {
            node_type: 'CheckpointLoaderSimple',
            status: 'cached',
            timestamp_start: at(s + 1),
            timestamp_end: at(s + 1),
            duration_ms: 0,
          }),
        ),
      },
      at(s + 1),
    ),
    input(
      'node.finished',
      sessionId,
      {
        node_run: asJson(nodeRun(sessionId, '3', { timestamp_start: at(s + 2), timestamp_end: at(s + 3) })),
        outputs: [{ node_id: '9', type: 'output', subfolder: '', filename: `${sessionId}_00001_.png` }],
      },
      at(s + 3),
    ),
    input(
      'execution.finished',
      sessionId,
      { session: { status: 'success', ended_at: at(s + 4), duration_ms: 3000 } },
      at(s + 4),
    ),
    input(
      'output.hashed',
      sessionId,
      {
        outputs: [
          {
            node_id: '9',
            type: 'output',
            subfolder: '',
            filename: `${sessionId}_00001_.png`,
            sha256: `${sessionId}`.padEnd(64, '0').slice(0, 64),
            bytes: 123456,
            width: 512,
            height: 512,
          },
        ],
      },
      at(s + 5),
    ),
  ]
}

/**
 * Registers the store contract for one dialect. `makeDialect` returns a dialect over a fresh, empty database
 * each time it is called.
 * @example
 * describeStoreContract('sqlite (memory)', () => createSqliteDialect({ path: ':memory:' }), { persistent: false })
 */
export function describeStoreContract(
  name: string,
  makeDialect: () => StoreDialect | Promise<StoreDialect>,
  options: StoreContractOptions,
): void {
  describe(`store contract: ${name}`, () => {
    const open: { close(): Promise<void> }[] = []
    const errors: unknown[] = []

    afterEach(async () => {
      for (const store of open.splice(0)) await store.close()
      errors.length = 0
    })

    function storeOf(dialect: StoreDialect, opts: Partial<RuntimeStoreOptions> = {}): RuntimeStore {
      const store = createRuntimeStore(dialect, {
        origin: 'comfy-audit/a',
        onError: (error) => errors.push(error),
        ...opts,
      })
      open.push(store)
      return store
    }

    async function newStore(opts: Partial<RuntimeStoreOptions> = {}): Promise<RuntimeStore> {
      const store = storeOf(await makeDialect(), opts)
      await store.init()
      return store
    }

    async function newDriver(): Promise<StoreDriver> {
      const driver = (await makeDialect()).createDriver()
      await driver.init()
      open.push(driver)
      return driver
    }

    it('assigns seq from 0 and reads events back in order', async () => {
      const store = await newStore()
      expect(await store.lastSeq()).toBe(-1)
      const first = await store.append([input('gateway.started', null, { version: '0.1.0' }, at(0))])
      const more = await store.append([
        input('prompt.submitted', 's1', {}, at(1)),
        input('prompt.accepted', 's1', { http_status: 200 }, at(2)),
      ])
      expect(first.map((e) => e.seq)).toEqual([0])
      expect(more.map((e) => e.seq)).toEqual([1, 2])
      expect(more[0]).toEqual({
        origin: 'comfy-audit/a',
        seq: 1,
        kind: 'prompt.submitted',
        time: at(1),
        session_id: 's1',
        payload: {},
      })
      expect(await collect(store.events())).toEqual([...first, ...more])
      expect(await store.lastSeq()).toBe(2)
      expect(await store.origins()).toEqual(['comfy-audit/a'])
    })

    it('filters events by seq range, session, kinds, time and limit across pages', async () => {
      const store = await newStore()
      const inputs = Array.from({ length: 1200 }, (_, i) =>
        input(i % 3 === 0 ? 'node.started' : 'node.finished', i % 2 === 0 ? 'even' : 'odd', { i }, at(i)),
      )
      const stored = await store.append(inputs)
      expect(await collect(store.events())).toEqual(stored)
      const range = await collect(store.events({ fromSeq: 498, toSeq: 1003 }))
      expect(range.map((e) => e.seq)).toEqual(Array.from({ length: 506 }, (_, i) => 498 + i))
      const odd = await collect(store.events({ sessionId: 'odd', kinds: ['node.started'] }))
      expect(odd.map((e) => e.seq)).toEqual(
        stored.filter((e) => e.seq % 2 === 1 && e.seq % 3 === 0).map((e) => e.seq),
      )
      const window = await collect(store.events({ since: at(100), until: at(110) }))
      expect(window.map((e) => e.seq)).toEqual([100, 101, 102, 103, 104, 105, 106, 107, 108, 109])
      const limited = await collect(store.events({ fromSeq: 10, limit: 700 }))
      expect(limited.map((e) => e.seq)).toEqual(Array.from({ length: 700 }, (_, i) => 10 + i))
      expect(await collect(store.events({ kinds: [] }))).toEqual([])
      expect(await collect(store.events({ origin: 'someone-else' }))).toEqual([])
    })

    it('keeps payloads lossless: 2^64-1 seeds, NaN and Infinity round-trip exactly', async () => {
      const store = await newStore()
      const payload: JsonObject = {
        seed: 2n ** 64n - 1n,
        negative: -(2n ** 63n),
        nan: NaN,
        inf: Infinity,
        ninf: -Infinity,
        float: 0.1,
        nested: [{ deep: [1, 'two', null, true, { x: 2n ** 70n }] }],
        text: 'ünïcødé "quoted" \n line \u0001',
      }
      const [stored] = await store.append([
        input('prompt.submitted', 's1', {
          ...payload,
          session: {
            seeds: [{ node_id: '3', input_name: 'seed', value: 2n ** 64n - 1n }],
            extra_data: { v: NaN },
          },
        }),
      ])
      const [read] = await collect(store.events())
      expect(read).toEqual(stored)
      expect(read?.payload.seed).toBe(18446744073709551615n)
      expect(Number.isNaN(read?.payload.nan)).toBe(true)
      expect(read?.payload.inf).toBe(Infinity)
      const [raw] = await collect(store.rawEvents())
      expect(raw?.payload).toContain('18446744073709551615')
      const session = await store.session('s1')
      expect(session?.seeds).toEqual([{ node_id: '3', input_name: 'seed', value: 18446744073709551615n }])
      expect(Number.isNaN((session?.extra_data as JsonObject).v)).toBe(true)
    })

    it('merges session patches across events and commits, keeping fields not named', async () => {
      const store = await newStore()
      const events = sessionLifecycle('s1', 'alice', 0)
      // The first three events in one commit, the rest one by one: both paths must merge the same way.
      await store.append(events.slice(0, 3))
      expect(await store.session('s1')).toMatchObject({
        status: 'running',
        http_status: 200,
        queued_at: at(0),
      })
      for (const event of events.slice(3)) await store.append([event])
      const session = await store.session('s1', 'comfy-audit/a')
      expect(session).toEqual({
        ...emptySession('comfy-audit/a', 's1'),
        status: 'success',
        http_status: 200,
        number: 7,
        submitter: {
          user: 'alice',
          auth_method: 'token',
          client_address: '10.0.0.5',
          user_agent: 'test',
          client_id: 'c1',
        },
        prompt: { '3': { class_type: 'KSampler', inputs: { seed: 2n ** 64n - 1n } } },
        prompt_sha256: 'ab'.repeat(32),
        seeds: [{ node_id: '3', input_name: 'seed', value: 2n ** 64n - 1n }],
        queued_at: at(0),
        started_at: at(1),
        ended_at: at(4),
        duration_ms: 3000,
      } satisfies SessionRecord)
      expect(await store.session('nope')).toBeUndefined()
      expect(errors).toEqual([])
    })

    it('upserts node runs by (origin, session, node) and replaces the whole record', async () => {
      const store = await newStore()
      await store.append([
        input('node.finished', 's1', {
          node_run: asJson(
            nodeRun('s1', '3', { status: 'error', error_message: 'OOM', traceback: ['a', 'b'] }),
          ),
        }),
      ])
      await store.append([
        input('node.finished', 's1', {
          node_run: asJson(nodeRun('s1', '5', { node_type: 'VAEDecode', timestamp_start: at(20) })),
        }),
      ])
      const replacement = nodeRun('s1', '3', { status: 'success', gpu_memory_used: 6000 })
      await store.append([input('node.finished', 's1', { node_run: asJson(replacement) })])
      const runs = await store.nodeRuns({ sessionId: 's1' })
      expect(runs).toEqual([
        { origin: 'comfy-audit/a', ...replacement },
        {
          origin: 'comfy-audit/a',
          ...nodeRun('s1', '5', { node_type: 'VAEDecode', timestamp_start: at(20) }),
        },
      ])
    })

    it('finds outputs by SHA-256 once hashed, keeping the time first seen', async () => {
      const store = await newStore()
      await store.append(sessionLifecycle('s1', 'alice', 0))
      const hash = 's1'.padEnd(64, '0')
      expect(await store.outputsBySha256(hash)).toEqual([
        {
          origin: 'comfy-audit/a',
          session_id: 's1',
          node_id: '9',
          type: 'output',
          subfolder: '',
          filename: 's1_00001_.png',
          sha256: hash,
          bytes: 123456,
          width: 512,
          height: 512,
          time: at(3),
        },
      ])
      expect(await store.outputsBySha256('f'.repeat(64))).toEqual([])
    })

    it('filters sessions by time, status and user, newest first, with limit and offset', async () => {
      const store = await newStore()
      await store.append(sessionLifecycle('s1', 'alice', 0))
      await store.append(sessionLifecycle('s2', 'bob', 100))
      await store.append(sessionLifecycle('s3', 'alice', 200))
      await store.append([input('execution.finished', 's3', { session: { status: 'error' } })])
      // A bypass session has no queue time: it sorts last.
      await store.append([
        input('session.bypass', 'sx', { session: { status: 'success', flags: ['bypass'] } }),
      ])
      const ids = (sessions: SessionRecord[]): string[] => sessions.map((s) => s.session_id)
      expect(ids(await store.sessions())).toEqual(['s3', 's2', 's1', 'sx'])
      expect(ids(await store.sessions({ since: at(100) }))).toEqual(['s3', 's2'])
      expect(ids(await store.sessions({ since: at(100), until: at(200) }))).toEqual(['s2'])
      expect(ids(await store.sessions({ status: ['success'] }))).toEqual(['s2', 's1', 'sx'])
      expect(ids(await store.sessions({ status: ['error', 'lost'] }))).toEqual(['s3'])
      expect(ids(await store.sessions({ status: [] }))).toEqual([])
      expect(ids(await store.sessions({ user: 'alice' }))).toEqual(['s3', 's1'])
      expect(ids(await store.sessions({ limit: 2 }))).toEqual(['s3', 's2'])
      expect(ids(await store.sessions({ limit: 2, offset: 2 }))).toEqual(['s1', 'sx'])
      // Counted by the database, per origin and status (what `comfy-audit status` reads).
      expect(await store.sessionCounts()).toEqual([
        { origin: 'comfy-audit/a', status: 'error', count: 1 },
        { origin: 'comfy-audit/a', status: 'success', count: 3 },
      ])
      expect(ids(await store.sessions({ offset: 3 }))).toEqual(['sx'])
      expect(ids(await store.sessions({ origin: 'elsewhere' }))).toEqual([])
    })

    it('filters node runs by node type, time and session', async () => {
      const store = await newStore()
      await store.append(sessionLifecycle('s1', 'alice', 0))
      await store.append(sessionLifecycle('s2', 'bob', 100))
      const key = (r: { session_id: string; node_id: string }): string => `${r.session_id}/${r.node_id}`
      expect((await store.nodeRuns()).map(key)).toEqual(['s1/4', 's1/3', 's2/4', 's2/3'])
      expect((await store.nodeRuns({ nodeType: 'KSampler' })).map(key)).toEqual(['s1/3', 's2/3'])
      expect((await store.nodeRuns({ since: at(50) })).map(key)).toEqual(['s2/4', 's2/3'])
      expect((await store.nodeRuns({ until: at(50), nodeType: 'CheckpointLoaderSimple' })).map(key)).toEqual([
        's1/4',
      ])
      expect((await store.nodeRuns({ sessionId: 's2', limit: 1 })).map(key)).toEqual(['s2/4'])
      expect(await store.nodeRuns({ origin: 'elsewhere' })).toEqual([])
    })

    it('keeps many origins in one database, keyed by origin and session id', async () => {
      const driver = await newDriver()
      const toEvents = (origin: string, inputs: AuditEventInput[]): AuditEvent[] =>
        inputs.map((e, seq) => ({ ...e, origin, seq }))
      // The same ComfyUI prompt id seen by two gateways: two sessions.
      const a = toEvents('gw/a', sessionLifecycle('shared', 'alice', 0))
      const b = toEvents('gw/b', sessionLifecycle('shared', 'bob', 50))
      await driver.append(prepareAppend(a))
      await driver.append(prepareAppend(b))
      expect(await driver.origins()).toEqual(['gw/a', 'gw/b'])
      expect(await driver.lastSeq('gw/a')).toBe(a.length - 1)
      expect(await driver.lastSeq('gw/c')).toBe(-1)
      const sessions = await driver.sessions({})
      expect(sessions.map((s) => [s.origin, s.session_id, s.submitter?.user])).toEqual([
        ['gw/b', 'shared', 'bob'],
        ['gw/a', 'shared', 'alice'],
      ])
      expect((await driver.session('shared', 'gw/b'))?.submitter?.user).toBe('bob')
      expect((await driver.sessions({ origin: 'gw/a' })).map((s) => s.origin)).toEqual(['gw/a'])
      expect((await driver.nodeRuns({ nodeType: 'KSampler' })).map((r) => r.origin)).toEqual(['gw/a', 'gw/b'])
      expect(await collect(driver.events({}))).toEqual([...a, ...b])
      expect(
        (await collect(driver.events({ origin: 'gw/b', fromSeq: 2, toSeq: 3 }))).map((e) => [
          e.origin,
          e.seq,
        ]),
      ).toEqual([
        ['gw/b', 2],
        ['gw/b', 3],
      ])
      expect((await driver.outputsBySha256('shared'.padEnd(64, '0'))).map((o) => o.origin)).toEqual([
        'gw/a',
        'gw/b',
      ])
      expect(await driver.sessionCounts()).toEqual([
        { origin: 'gw/a', status: 'success', count: 1 },
        { origin: 'gw/b', status: 'success', count: 1 },
      ])
    })

    it('leaves nothing half-written when a transaction fails', async () => {
      const driver = await newDriver()
      const origin = 'gw/a'
      await driver.append(prepareAppend([{ ...input('gateway.started', null), origin, seq: 0 }]))
      const failing: AuditEvent[] = [
        { ...sessionLifecycle('s1', 'alice', 0)[0]!, origin, seq: 1 },
        { ...input('node.finished', 's1', { node_run: asJson(nodeRun('s1', '3')) }), origin, seq: 2 },
        // Duplicate key: the database refuses the whole transaction.
        { ...input('gateway.stopped', null), origin, seq: 0 },
      ]
      await expect(driver.append(prepareAppend(failing))).rejects.toThrow()
      expect(await driver.lastSeq(origin)).toBe(0)
      expect((await collect(driver.events({}))).map((e) => e.seq)).toEqual([0])
      expect(await driver.derivedRows()).toEqual({ sessions: [], nodeRuns: [], outputs: [] })
    })

    it('rejects a failed append without consuming seq numbers or failing appends committed with it', async () => {
      const store = await newStore({ groupCommitDelayMillis: 50 })
      // `undefined` is not JSON: writing the payload throws inside the transaction.
      const bad = input('prompt.submitted', 'bad', { broken: undefined as unknown as JsonValue })
      const results = await Promise.allSettled([
        store.append([input('prompt.submitted', 'ok1')]),
        store.append([bad]),
        store.append([input('prompt.submitted', 'ok2'), input('prompt.accepted', 'ok2')]),
        store.append([input('no.such.kind' as AuditEventKind, null)]),
      ])
      expect(results.map((r) => r.status)).toEqual(['fulfilled', 'rejected', 'fulfilled', 'rejected'])
      const seqs = results.flatMap((r) => (r.status === 'fulfilled' ? r.value.map((e) => e.seq) : []))
      expect(seqs).toEqual([0, 1, 2])
      expect((await collect(store.events())).map((e) => [e.seq, e.session_id])).toEqual([
        [0, 'ok1'],
        [1, 'ok2'],
        [2, 'ok2'],
      ])
      expect(await store.session('bad')).toBeUndefined()
      const [next] = await store.append([input('gateway.stopped', null)])
      expect(next?.seq).toBe(3)
      expect(store.stats().failedCommits).toBeGreaterThan(0)
    })

    it('commits concurrent appends in shared transactions, in call order, without gaps', async () => {
      const store = await newStore({ groupCommitDelayMillis: 5, maxGroupEvents: 64 })
      const sizes = Array.from({ length: 300 }, (_, i) => 1 + (i % 3))
      const results = await Promise.all(
        sizes.map((size, i) =>
          store.append(Array.from({ length: size }, (_, j) => input('node.started', `s${i % 7}`, { i, j }))),
        ),
      )
      const total = sizes.reduce((a, b) => a + b, 0)
      expect(results.flat().map((e) => e.seq)).toEqual(Array.from({ length: total }, (_, i) => i))
      results.forEach((events, i) => expect(events.map((e) => e.payload.i)).toEqual(Array(sizes[i]).fill(i)))
      const stats = store.stats()
      expect(stats.events).toBe(total)
      expect(stats.commits).toBeLessThan(sizes.length)
      expect(stats.commits).toBeGreaterThanOrEqual(Math.ceil(total / 64))
      expect((await collect(store.events())).map((e) => e.seq)).toEqual(
        Array.from({ length: total }, (_, i) => i),
      )
    })

    it('rebuilds derived rows from the log equal to the incremental ones', async () => {
      const store = await newStore()
      for (const [i, id] of ['s1', 's2', 's3'].entries()) {
        const events = sessionLifecycle(id, i === 1 ? 'bob' : 'alice', i * 100)
        await store.append(events.slice(0, 4))
        for (const event of events.slice(4)) await store.append([event])
      }
      await store.append([
        input('node.finished', 's2', { node_run: asJson(nodeRun('s2', '3', { status: 'interrupted' })) }),
      ])
      const incremental = await store.derivedRows()
      expect(incremental.sessions).toHaveLength(3)
      const replayed = replayDerived(await collect(store.events()))
      expect(replayed.problems).toEqual([])
      expect({ sessions: replayed.sessions, nodeRuns: replayed.nodeRuns, outputs: replayed.outputs }).toEqual(
        incremental,
      )
      const outcome = await store.rebuildDerived()
      expect(outcome).toEqual({ events: 22, problems: [] })
      expect(await store.derivedRows()).toEqual(incremental)
      expect(await store.rebuildDerived('comfy-audit/a')).toEqual({ events: 22, problems: [] })
      expect(await store.derivedRows('comfy-audit/a')).toEqual(incremental)
    })

    it('stores the event but skips and reports malformed projected fields', async () => {
      const store = await newStore()
      const [event] = await store.append([
        input('prompt.submitted', 's1', { session: { status: 'bogus', queued_at: at(0), number: 'seven' } }),
      ])
      expect(event?.seq).toBe(0)
      const session = await store.session('s1')
      expect(session?.status).toBe('queued')
      expect(session?.queued_at).toBe(at(0))
      expect(session?.number).toBeNull()
      expect(errors).toHaveLength(1)
      expect(String(errors[0])).toContain('payload.session.status')
    })

    it('gets and sets state values losslessly', async () => {
      const store = await newStore()
      expect(await store.getState('gateway.clients')).toBeUndefined()
      await store.setState('gateway.clients', { alice: ['ns-1', 'ns-2'], big: 2n ** 64n - 1n })
      await store.setState('gateway.open', ['s1'])
      await store.setState('gateway.clients', { alice: ['ns-3'] })
      expect(await store.getState('gateway.clients')).toEqual({ alice: ['ns-3'] })
      expect(await store.getState('gateway.open')).toEqual(['s1'])
      await store.setState('gateway.open', null)
      expect(await store.getState('gateway.open')).toBeNull()
    })

    it('initialises once and refuses calls after close', async () => {
      const store = await newStore()
      await Promise.all([store.init(), store.init()])
      const pending = store.append([input('gateway.stopped', null)])
      await store.close()
      // Queued before close: committed by close, not dropped.
      expect((await pending).map((e) => e.seq)).toEqual([0])
      await expect(store.append([input('gateway.started', null)])).rejects.toThrow(/closed/)
      await expect(store.sessions()).rejects.toThrow(/closed/)
      await store.close()
    })

    it('stores each event with its RFC 9162 leaf hash', async () => {
      const store = await newStore()
      const stored = await store.append([
        ...sessionLifecycle('s1', 'alice', 0),
        input('prompt.submitted', 's2', { seed: 2n ** 64n - 1n, cfg: NaN, text: 'ü\u2028' }),
      ])
      const raw = await collect(store.rawEvents())
      expect(raw.map((r) => r.leaf_hash)).toEqual(stored.map(eventLeafHex))
      expect(raw.every((r) => r.pruned === null)).toBe(true)
      // Recomputed from the stored text, the leaf is the same as from the event in memory.
      const reread = await collect(store.events())
      expect(reread.map(eventLeafHex)).toEqual(raw.map((r) => r.leaf_hash))
    })

    it('keeps lone surrogates in every text column and key: leaves and derived rows match the log (issue 10 item 12)', async () => {
      const store = await newStore()
      // A lone high and a lone low surrogate, the escape unit itself, and a private-use character that
      // must not be taken for an escape.
      const odd = (tag: string): string => `${tag}\ud800x\udc80\ufffe\ue001`
      const sessionId = odd('s')
      const events = sessionLifecycle(sessionId, odd('alice'), 0)
      events.push(
        input('node.finished', sessionId, {
          node_run: asJson(
            nodeRun(sessionId, odd('7'), {
              node_type: odd('Custom'),
              status: 'error',
              error_message: odd('bad file '),
              exception_type: odd('OSError'),
              display_node: odd('7'),
            }),
          ),
        }),
      )
      const stored = await store.append(events)
      // A second id that differs only in which lone surrogate it holds stays a different session.
      await store.append([
        input('prompt.submitted', 's\udbffx\udc80\ufffe\ue001', { session: { status: 'queued' } }),
      ])
      const raw = await collect(store.rawEvents({ sessionId }))
      expect(raw.map((r) => r.session_id)).toEqual(stored.map(() => sessionId))
      expect(raw.map((r) => r.leaf_hash)).toEqual(stored.map(eventLeafHex))
      expect((await collect(store.events({ sessionId }))).map(eventLeafHex)).toEqual(stored.map(eventLeafHex))
      const session = await store.session(sessionId)
      expect(session?.submitter?.user).toBe(odd('alice'))
      expect((await store.sessions({ user: odd('alice') })).map((s) => s.session_id)).toEqual([sessionId])
      expect(await store.sessionIds()).toEqual(
        expect.arrayContaining([sessionId, 's\udbffx\udc80\ufffe\ue001']),
      )
      const runs = await store.nodeRuns({ sessionId })
      expect(runs.find((r) => r.node_id === odd('7'))).toMatchObject({
        node_type: odd('Custom'),
        error_message: odd('bad file '),
        exception_type: odd('OSError'),
        display_node: odd('7'),
      })
      const [output] = await store.outputsBySha256(sessionId.padEnd(64, '0').slice(0, 64))
      expect(output?.filename).toBe(`${sessionId}_00001_.png`)
      const replayed = replayDerived(await collect(store.events()))
      expect({ sessions: replayed.sessions, nodeRuns: replayed.nodeRuns, outputs: replayed.outputs }).toEqual(
        await store.derivedRows(),
      )
    })

    it('keeps numbers as ComfyUI spelled them (1.0, 1.00, 1e5, -0.0) in payloads and derived rows (issue 10 item 12)', async () => {
      const store = await newStore()
      const inputs =
        '{"cfg":1.0,"denoise":1.00,"scale":1e5,"shift":-0.0,"seed":18446744073709551615,"nan":NaN}'
      const parsed = parseJson(
        `{"session":{"status":"queued","prompt":{"3":{"class_type":"KSampler","inputs":${inputs}}}},` +
          `"node_run":${stringifyJson(asJson(nodeRun('s1', '3', { inputs: {} })))}}`,
      )
      if (!parsed.ok) throw new Error(parsed.reason)
      const payload = parsed.value as JsonObject
      const run = payload.node_run as JsonObject
      const prompt = (payload.session as JsonObject).prompt as JsonObject
      run.inputs = (prompt['3'] as JsonObject).inputs as JsonObject
      await store.append([input('node.finished', 's1', payload)])
      const [raw] = await collect(store.rawEvents())
      const tagged = inputs.replace('NaN', '{"$float":"NaN"}')
      // The log keeps the spellings too, as standard JSON (NaN tagged, payload format 1).
      expect(raw?.payload).toContain(tagged)
      expect(raw?.payload_format).toBe(1)
      const session = await store.session('s1')
      const [stored] = await store.nodeRuns({ sessionId: 's1' })
      expect(stringifyJson(session?.prompt ?? null, { tagged: true })).toContain(tagged)
      expect(stringifyJson(stored?.inputs ?? null, { tagged: true })).toBe(tagged)
      expect(Number.isNaN((stored?.inputs as JsonObject).nan)).toBe(true)
      const derived = await store.derivedRows()
      expect(stringifyJson(derived.nodeRuns[0]?.inputs ?? null, { tagged: true })).toBe(tagged)
    })

    it('stores checkpoints once per (origin, size), listed by size', async () => {
      const store = await newStore()
      const cp = (size: number, origin = 'comfy-audit/a') => ({
        origin,
        size,
        root_hash: Buffer.alloc(32, size).toString('base64'),
        note: `${origin}\n${size}\nroot\n\n— sig\n`,
        created_at: at(size),
      })
      await store.addCheckpoint(cp(10))
      await store.addCheckpoint(cp(2))
      await store.addCheckpoint({ ...cp(10), note: 'another' })
      await store.addCheckpoint(cp(5, 'gw/other'))
      expect(await store.checkpoints()).toEqual([cp(2), cp(10)])
      expect(await store.checkpoints('gw/other')).toEqual([cp(5, 'gw/other')])
    })

    it('prunes payloads in seq ranges, keeps leaf hashes and rebuilds derived rows', async () => {
      const store = await newStore()
      await store.append(sessionLifecycle('s1', 'alice', 0))
      await store.append(sessionLifecycle('s2', 'bob', 100))
      const before = await collect(store.rawEvents())
      const [mark] = await store.append([input('audit.erased', 's1', { ranges: [[0, 6]] })])
      expect(
        await store.prunePayloads({ origin: 'comfy-audit/a', ranges: [[0, 6]], prunedBy: mark!.seq }),
      ).toBe(7)
      // Already pruned rows are not pruned twice.
      expect(await store.prunePayloads({ origin: 'comfy-audit/a', ranges: [[0, 3]], prunedBy: 99 })).toBe(0)
      const after = await collect(store.rawEvents())
      expect(after.map((r) => r.leaf_hash)).toEqual([...before.map((r) => r.leaf_hash), eventLeafHex(mark!)])
      expect(after.slice(0, 7).map((r) => [r.payload, r.pruned])).toEqual(Array(7).fill(['{}', mark!.seq]))
      expect(after.slice(0, 7).map((r) => [r.kind, r.time, r.session_id])).toEqual(
        before.slice(0, 7).map((r) => [r.kind, r.time, r.session_id]),
      )
      expect(after.slice(7, 14)).toEqual(before.slice(7))
      expect(await store.session('s1')).toBeUndefined()
      expect((await store.session('s2'))?.status).toBe('success')
      expect(await store.outputsBySha256('s1'.padEnd(64, '0'))).toEqual([])
      const replayed = replayDerived(await collect(store.events()))
      expect(await store.derivedRows()).toEqual({
        sessions: replayed.sessions,
        nodeRuns: replayed.nodeRuns,
        outputs: replayed.outputs,
      })
    })

    it('lists every session id the log ever named, erased ones too, per origin (issue 10 item 1/4)', async () => {
      const store = await newStore()
      await store.append(sessionLifecycle('s1', 'alice', 0))
      await store.append(sessionLifecycle('s2', 'bob', 100))
      await store.append([input('gateway.started', null, {})])
      const [mark] = await store.append([input('audit.erased', 's1', { ranges: [[0, 6]] })])
      await store.prunePayloads({ origin: 'comfy-audit/a', ranges: [[0, 6]], prunedBy: mark!.seq })
      expect(await store.session('s1')).toBeUndefined()
      expect((await store.sessionIds()).sort()).toEqual(['s1', 's2'])
      expect(await store.sessionIds('gw/other')).toEqual([])
    })

    it('tells commit listeners the committed events in seq order', async () => {
      const store = await newStore({ groupCommitDelayMillis: 5 })
      const seen: number[] = []
      const off = store.onCommitted((events) => seen.push(...events.map((e) => e.seq)))
      store.onCommitted(() => {
        throw new Error('listener bug')
      })
      await Promise.all(
        Array.from({ length: 30 }, (_, i) => store.append([input('node.started', 's', { i })])),
      )
      expect(seen).toEqual(Array.from({ length: 30 }, (_, i) => i))
      expect(errors.length).toBeGreaterThan(0)
      off()
      await store.append([input('node.started', 's')])
      expect(seen).toHaveLength(30)
    })

    if (options.persistent) {
      it('continues seq numbers and keeps state after reopening', async () => {
        const dialect = await makeDialect()
        const first = storeOf(dialect)
        await first.append(sessionLifecycle('s1', 'alice', 0))
        await first.setState('k', { n: 1 })
        await first.close()
        const second = storeOf(dialect)
        const [next] = await second.append([input('gateway.started', null)])
        expect(next?.seq).toBe(7)
        expect(await second.getState('k')).toEqual({ n: 1 })
        expect((await second.session('s1'))?.status).toBe('success')
      })

      it('lets two gateways start together and append to their own origins', async () => {
        const dialect = await makeDialect()
        const a = storeOf(dialect, { origin: 'gw/a' })
        const b = storeOf(dialect, { origin: 'gw/b' })
        await Promise.all([a.init(), b.init()])
        await Promise.all([
          ...Array.from({ length: 20 }, (_, i) => a.append([input('node.started', 'x', { i })])),
          ...Array.from({ length: 20 }, (_, i) => b.append([input('node.started', 'x', { i })])),
        ])
        expect(await a.lastSeq('gw/a')).toBe(19)
        expect(await b.lastSeq('gw/b')).toBe(19)
        expect((await collect(a.events({ origin: 'gw/b' }))).map((e) => e.payload.i)).toEqual(
          Array.from({ length: 20 }, (_, i) => i),
        )
      })
    }
  })
}
