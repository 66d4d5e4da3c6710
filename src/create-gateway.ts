/**
 * The composition root: the one place that knows concrete stores, capture and the proxy, and wires them.
 */
import { mkdirSync } from 'node:fs'
import { join } from 'node:path'
import type { IncomingMessage } from 'node:http'
import { reportError, silentLogger, type Logger } from './audit/report-error.js'
import type {
  AuditEventInput,
  AuditEventKind,
  FileRef,
  JsonObject,
  JsonValue,
  Submitter,
} from './audit/types.js'
import { createCapture, type Capture, type ResumedSession } from './capture/capture.js'
import { redactEvent } from './capture/redact-event.js'
import {
  environmentFromSystemStats,
  gpuSampleFromSystemStats,
  systemStatsIdentity,
} from './capture/environment.js'
import { createSubmissionSeal, promptDigest, sealSecretFromSigner } from './capture/submission-seal.js'
import { createComfyClient } from './comfyui/comfy-client.js'
import { zJsonValue, zObjectInfo, zSystemStats, type SystemStats } from './comfyui/schemas.js'
import { dialectFor } from './cli/open-store.js'
import { parseHostPort, sinkName, type Config } from './config/config.js'
import { createGateway, type Gateway } from './gateway/create-gateway.js'
import { auditReader, createAccessGuard } from './identity/access-guard.js'
import { createRefusalLog } from './identity/refusal-log.js'
import { createAuthenticator } from './identity/authenticator.js'
import { redactingLogger } from './identity/redacting-logger.js'
import { createOffThreadPromptAnalyzer } from './identity/off-thread-analysis.js'
import { createRedactor, stripUrlCredentials } from './identity/redaction.js'
import { createMetricsRoute } from './metrics/metrics-route.js'
import { createMetrics, observeEvents, queueDepthFromFrame, type Metrics } from './metrics/metrics.js'
import { createAuditApi } from './query/audit-api.js'
import { createDashboardRoute } from './query/dashboard-route.js'
import { createPeopleApi } from './query/people-api.js'
import { retentionMillis, runRetention } from './query/retention-job.js'
import { createSinkPipeline, sinkHealthJson, type SinkPipeline } from './sinks/sink-pipeline.js'
import { loadOrCreateSigningKey } from './ledger/key-store.js'
import { createLedger, type Ledger } from './ledger/ledger.js'
import { createFilePublisher, createWebhookPublisher } from './ledger/publish.js'
import { createFileHasher } from './provenance/file-hasher.js'
import { createModelHasher } from './provenance/model-hasher.js'
import { createOutputHasher, createProvenanceEnricher } from './provenance/provenance-enricher.js'
import { acquireDirLock, type DirLock } from './store/data-dir-lock.js'
import { openEventSpool } from './store/event-spool.js'
import { createRuntimeStore, type RuntimeStore } from './store/runtime-store.js'

/** A running audit gateway: proxy, capture and store wired together. */
export interface AuditGateway {
  readonly gateway: Gateway
  readonly store: RuntimeStore
  readonly capture: Capture
  /** The tamper-evident log over the store: signed checkpoints every N events / T seconds and at shutdown. */
  readonly ledger: Ledger
  /** Resolves when every model and output hash started so far is committed. */
  provenanceIdle(): Promise<void>
  /** Prometheus collector served at `/_audit/metrics` (see config `metrics`). */
  readonly metrics: Metrics
  /** The configured sinks (config `sinks`), fed with every committed event. */
  readonly sinks: SinkPipeline
  readonly url: string
  /**
   * Reconciles now instead of at the next sweep: closes open sessions ComfyUI has finished or lost, records
   * prompts that bypassed the gateway. Resolves once the resulting events are committed.
   */
  reconcileNow(): Promise<void>
  /** Drains requests, flushes capture and the store, and closes everything. Idempotent. */
  close(): Promise<void>
}

export interface AuditGatewayOptions {
  logger?: Logger
  /** Epoch-ms clock (tests). */
  now?: () => number
  /**
   * Identity of each request, bypassing authentication and access control (tests). Without it the gateway
   * authenticates per `config.auth` and enforces roles and limits (src/identity/access-guard.ts).
   */
  identify?: (req: IncomingMessage) => Submitter | Promise<Submitter>
  /** Timer period of the bypass/reconciliation sweep, ms (default 30 000; 0 turns it off). */
  sweepIntervalMillis?: number
}

const CLIENT_IDS_STATE_KEY = 'gateway.client_ids'
/** Largest POST /prompt body whose graph the submission seal digests (1 MiB). */
const MAX_DIGESTED_PROMPT_BYTES = 1 << 20

/**
 * Starts the gateway described by `config`. Throws `DirLockedError` when another live process holds the
 * data dir: two writers of one origin would corrupt its sequence numbers.
 */
export async function startAuditGateway(
  config: Readonly<Config>,
  options: AuditGatewayOptions = {},
): Promise<AuditGateway> {
  mkdirSync(config.data, { recursive: true, mode: 0o700 })
  const lock = acquireDirLock(config.data, { purpose: 'comfy-audit gateway' })
  try {
    return await startLocked(config, options, lock)
  } catch (error) {
    lock.release()
    throw error
  }
}

async function startLocked(
  config: Readonly<Config>,
  options: AuditGatewayOptions,
  lock: DirLock,
): Promise<AuditGateway> {
  // One policy for everything that leaves the process: events (capture redacts its own; the gateway's own
  // events below go through `append`) and every log line, whichever component writes it.
  const redaction = createRedactor(config.redaction)
  // Large prompt bodies are parsed and redacted on a worker thread, so the proxy keeps answering meanwhile.
  const offThread = createOffThreadPromptAnalyzer(config.redaction)
  const logger = redactingLogger(options.logger ?? silentLogger, redaction.text)
  const upstream = config.comfyui.url.replace(/\/+$/, '')
  // ComfyUI's own GETs, path prefix kept; any failure reads as "no answer" (null).
  const comfy = createComfyClient({ baseUrl: upstream })
  const fetchJson = async (path: string, timeoutMillis: number): Promise<JsonValue | null> => {
    const r = await comfy.getJson(zJsonValue, path, { timeoutMillis })
    return r.ok ? r.value : null
  }

  // While the database refuses commits, acknowledged events wait in memory, then in this spool on disk
  // (inside the locked data dir, so one process owns it); a next start commits what a crash left there.
  const storeSpool = await openEventSpool({
    dir: join(config.data, 'store-spool'),
    maxBytes: config.store.outage.spoolMaxBytes,
  })
  const metrics = createMetrics()
  const store = createRuntimeStore(
    await dialectFor(config.store.url, config.data, {
      sqliteThread: 'worker',
      busyTimeoutMillis: config.store.busyTimeoutMillis,
    }),
    {
      origin: config.origin ?? 'comfy-audit',
      onError: (err, context) => reportError(err, `store: ${context}`),
      outage: { maxQueuedEvents: config.store.outage.maxQueuedEvents, spool: storeSpool },
      onHealthChange: (health) => {
        metrics.storeHealth(health)
        const details = { ...health }
        if (health.state === 'over-quota') {
          logger.error(
            `store: write-ahead spool full (${health.spooledBytes} bytes); ` +
              (config.store.outage.whenFull === 'refuse'
                ? 'new prompts are refused with 503 until the store is back'
                : 'prompts still run (store.outage.whenFull = accept); their events wait in memory'),
            details,
          )
        } else if (health.state === 'retrying') {
          logger.error(`store: commits failing, retrying; events wait in memory then on disk`, details)
        } else {
          logger.info('store: commits succeed again; waiting events committed in order', details)
        }
      },
    },
  )
  await store.init()

  // Metrics and sinks follow commits: they see exactly what the store holds, in commit order, and never
  // slow the proxy path (onEvents only queues; a sink that is down fills its own spool).
  let sinks: SinkPipeline
  try {
    // The log is the sinks' record: each replays from it what it had not delivered before a crash.
    sinks = await createSinkPipeline(config.sinks, {
      dataDir: config.data,
      logger,
      log: {
        origin: store.origin,
        lastSeq: () => store.lastSeq(),
        events: (filter) => store.events(filter),
      },
    })
  } catch (err) {
    await store.close()
    throw err
  }
  const offCommitted = store.onCommitted((events) => {
    observeEvents(metrics, events)
    sinks.onEvents(events)
  })

  /**
   * Appends events made here rather than by capture (gateway lifecycle, security, audit reads, people changes,
   * provenance), redacted by the same policy as capture's, so no request detail they carry (an audit-API URL,
   * a User-Agent, a configured URL with credentials) reaches the store or a sink as given.
   */
  const append = (events: readonly AuditEventInput[]): ReturnType<RuntimeStore['append']> =>
    store.append(events.map((e) => redactEvent(e, redaction.text)))

  /** Appends one gateway-level event (not tied to a session); never throws, never awaited by a request. */
  const record = (kind: AuditEventKind, payload: JsonObject): void => {
    const time = new Date(options.now?.() ?? Date.now()).toISOString()
    append([{ kind, time, session_id: null, payload }]).catch((err: unknown) =>
      reportError(err, `store append ${kind}`),
    )
  }

  // The ledger follows commits from the first event on; its key is made at first start (mode 0600).
  const key = await loadOrCreateSigningKey(config.data, store.origin)
  const publishers = [
    config.ledger.publishFile ? createFilePublisher(config.ledger.publishFile) : null,
    config.ledger.publishWebhook ? createWebhookPublisher(config.ledger.publishWebhook) : null,
  ].filter((p) => p !== null)
  const ledger = createLedger({
    store,
    signer: key.signer,
    checkpointEvery: config.ledger.checkpointEvery,
    checkpointIntervalMillis: config.ledger.checkpointIntervalMillis,
    publish: publishers.length
      ? async (note, cp) => {
          await Promise.all(publishers.map((publish) => publish(note, cp)))
        }
      : undefined,
    onError: (err, context) => reportError(err, `ledger: ${context}`),
    now: options.now,
  })
  await ledger.start()

  // Provenance: model files and outputs are hashed in worker threads after their events are committed, so the
  // proxy path never waits for it; the hashes are later events of the same session.
  const fileHasher = createFileHasher({ workers: config.provenance.workers })
  // Outputs whose names redaction changed, by the name the log holds: the hasher needs the real name to find
  // the file. It lives only here, in memory, until the file is hashed (bounded: one never hashed is dropped).
  const realNames = new Map<string, FileRef>()
  const realNameKey = (sessionId: string, nodeId: string, f: FileRef): string =>
    JSON.stringify([sessionId, nodeId, f.type, f.subfolder, f.filename])
  const comfyOutputs = createOutputHasher({
    comfyUrl: upstream,
    fileHasher,
    localDirs: config.provenance.localDirs,
  })
  const enricher = config.provenance.enabled
    ? createProvenanceEnricher({
        emit: (events) => append(events),
        modelHasher: createModelHasher({
          fileHasher,
          cacheStore: store,
          pathMap: config.provenance.pathMap,
          folderPaths: async () => {
            const v = await fetchJson(`/internal/folder_paths`, 10_000)
            if (!v || typeof v !== 'object' || Array.isArray(v)) return null
            const out: Record<string, string[]> = {}
            for (const [k, dirs] of Object.entries(v)) {
              if (Array.isArray(dirs)) out[k] = dirs.filter((d): d is string => typeof d === 'string')
            }
            return out
          },
        }),
        outputHasher: {
          hash: (file, sessionId) => {
            const nodeId = (file as FileRef & { node_id?: unknown }).node_id
            const key = sessionId && typeof nodeId === 'string' ? realNameKey(sessionId, nodeId, file) : null
            const real = key === null ? undefined : realNames.get(key)
            if (key !== null) realNames.delete(key)
            return comfyOutputs.hash(real ?? file)
          },
        },
        onError: (err, context) => reportError(err, `provenance: ${context}`),
        now: options.now,
      })
    : null
  const offEnricher = enricher ? store.onCommitted((events) => enricher.onCommitted(events)) : () => {}

  // Capture emits events in order; the runtime store assigns sequence numbers in call order and group-commits.
  // Nothing on the proxy path waits for this promise.
  const emit = (events: AuditEventInput[]): void => {
    store.append(events).catch((err: unknown) => reportError(err, 'store append'))
  }

  // Who submitted each prompt travels, sealed, inside the prompt to ComfyUI: a crash between the 200 and the
  // commit of prompt.submitted then loses nothing that ComfyUI's queue and history do not give back.
  const submissionSeal = createSubmissionSeal({
    origin: store.origin,
    secret: sealSecretFromSigner(key.signer),
  })

  let objectInfoCache: ReturnType<typeof zObjectInfo.safeParse> | null = null
  // What of /system_stats lasts as long as one ComfyUI process: a reading that differs means it restarted, so
  // the environment (and the custom node packs of /object_info) must be taken again.
  let systemIdentity: string | null = null
  const noteSystemStats = (stats: SystemStats): void => {
    const identity = systemStatsIdentity(stats)
    if (systemIdentity !== null && identity !== systemIdentity) forgetEnvironment()
    systemIdentity = identity
  }
  const forgetEnvironment = (): void => {
    objectInfoCache = null
    capture.refreshEnvironment()
  }
  const capture = createCapture({
    submissionSeal,
    origin: store.origin,
    now: options.now,
    emit,
    gpuSampleIntervalMs: config.capture.gpuSampleIntervalMillis,
    maxInputStringLength: config.capture.maxInputLength,
    // Secrets, e-mail addresses and home-directory user names leave before anything is hashed or stored.
    redact: redaction,
    analyzePromptBody: (body, opts) => offThread.analyze(body, opts),
    redactText: redaction.text,
    environmentTtlMs: config.capture.environmentTtlMillis,
    onRedactedFile: ({ sessionId, nodeId, recorded, real }) => {
      if (realNames.size >= 4096) realNames.delete(realNames.keys().next().value as string)
      realNames.set(realNameKey(sessionId, nodeId, recorded), real)
    },
    sampleGpu: async () => {
      const stats = zSystemStats.safeParse(await fetchJson(`/system_stats`, 2000))
      if (!stats.success) return null
      noteSystemStats(stats.data)
      return gpuSampleFromSystemStats(stats.data)
    },
    environment: async () => {
      const stats = zSystemStats.safeParse(await fetchJson(`/system_stats`, 5000))
      if (!stats.success) return null
      noteSystemStats(stats.data)
      if (!objectInfoCache?.success)
        objectInfoCache = zObjectInfo.safeParse(await fetchJson(`/object_info`, 30_000))
      return environmentFromSystemStats(stats.data, objectInfoCache.success ? objectInfoCache.data : null)
    },
  })

  let draining = false
  // Aborted when shutdown starts, so the dashboard's live-update streams end and do not hold the drain.
  const shuttingDown = new AbortController()
  const dashboard = createDashboardRoute()
  const auditApi = createAuditApi({
    store,
    onCommitted: (listener) => store.onCommitted(listener),
    signal: shuttingDown.signal,
    upstreamHealthy: () => gateway?.upstreamHealthy ?? false,
    draining: () => draining,
    version: '0.1.0',
    verifierKey: key.verifierKey,
    healthDetails: () => ({
      origin: store.origin,
      store: store.dialect,
      open_sessions: capture.openSessions().length,
      sinks: sinkHealthJson(sinks.health()),
      // Anything but ok means acknowledged events are not yet in the store (over-quota: prompts refused).
      ...(store.health().state === 'ok' ? {} : { status: 'degraded' }),
      store_write: { ...store.health() },
    }),
  })
  // Without metrics.token or metrics.open the route answers 404 saying how to switch it on.
  const metricsRoute = createMetricsRoute(metrics, {
    ...config.metrics,
    beforeScrape: () => {
      metrics.sinkHealth(sinks.health())
      metrics.storeHealth(store.health())
    },
  })

  const { host, port } = parseHostPort(config.listen)
  // Throws (bad startup config) for auth.mode none beyond loopback without auth.allowInsecure, saying why.
  const authenticator = createAuthenticator(config, store, {
    now: options.now,
    onEvent: (e) => {
      logger.info(`security: ${e.kind}`, { ...e })
      const kind =
        e.kind === 'login.succeeded'
          ? 'security.login'
          : e.kind === 'login.failed'
            ? 'security.login_failed'
            : e.kind === 'logout'
              ? 'security.logout'
              : 'security.person_changed'
      record(kind, {
        ...(e as unknown as JsonObject),
        ...(e.kind === 'person.provisioned' ? { action: 'provisioned', by: 'gateway' } : {}),
      })
    },
  })
  // Refusals are evidence (someone tried what they may not), rate-limited so that a flood cannot fill the disk.
  const refusals = createRefusalLog({
    ...config.limits.refusals,
    now: options.now,
    record: (kind, payload) => {
      logger.warn(kind === 'access.refused' ? 'access refused' : 'access refused (summary)', payload)
      record(kind, payload)
    },
  })
  // The dashboard's People page; the journal names the admin as `dashboard:<name>`.
  const peopleApi = createPeopleApi({
    directory: authenticator.directory,
    actor: (req) => `dashboard:${auditReader(req)?.user ?? 'local'}`,
  })
  const guard = createAccessGuard({
    authenticator,
    auth: config.auth,
    limits: config.limits,
    multiUser: config.comfyui.multiUser,
    listenHost: host,
    upstreamUrl: upstream,
    promptOwner: async (id) => (await store.session(id))?.submitter?.user ?? null,
    // The metrics route checks metrics.token itself.
    publicPaths: ['/_audit/metrics'],
    now: options.now,
    logger,
    onRefused: (r) => refusals.refused(r),
  })
  // Capture owns the index of known prompt ids; before the first request it learns every id the log ever
  // held (pruned and erased ones too), so a reused id is refused and no bypass resurrects an old record.
  capture.loadKnownPromptIds(await store.sessionIds())
  capture.loadLostSessionIds(
    (await store.sessions({ origin: store.origin, status: ['lost'], limit: 10_000 })).map(
      (s) => s.session_id,
    ),
  )
  const gateway: Gateway = await createGateway({
    upstreamUrl: upstream,
    host,
    port,
    tap: {
      promptSubmitted: (e) => capture.promptSubmitted(e),
      promptAnswered: (e) => capture.promptAnswered(e),
      promptRefused: (e) => capture.promptRefused(e),
      frame: (e) => {
        const depth = queueDepthFromFrame(e.frame)
        if (depth !== undefined) metrics.setQueueDepth(depth)
        capture.frame(e)
      },
      action: (e) => capture.action(e),
    },
    ...(options.identify ? { identify: options.identify } : { guard }),
    maxClientFrameBytes: config.limits.maxWsFrameBytes,
    onRequestDone: (e) => metrics.observeRequest(e.method, e.route, e.status, e.seconds),
    maxPromptBytes: config.limits.maxBodyBytes,
    headersTimeoutMs: config.limits.headersTimeoutMillis,
    requestTimeoutMs: config.limits.requestTimeoutMillis,
    unauthenticatedIdleMs: config.limits.unauthenticatedIdleMillis,
    // Fail closed (default): a prompt that could not be recorded is not run. Synchronous, no disk.
    refusePrompt: () => {
      if (config.store.outage.whenFull !== 'refuse' || store.health().state !== 'over-quota') return null
      metrics.promptRefused('store')
      return 'the audit store is unavailable and its write-ahead spool is full (store.outage.spoolMaxBytes)'
    },
    auditHandler: async (req, res) => {
      if (await authenticator.handleAuditRoute(req, res)) return true
      if (await metricsRoute(req, res)) {
        // The metrics route checks metrics.token itself: its refusals are refusals like the guard's.
        if (res.statusCode === 401 || res.statusCode === 403)
          refusals.refused({
            status: res.statusCode,
            reason: 'metrics token missing or wrong',
            method: req.method ?? 'GET',
            path: '/_audit/metrics',
            transport: 'http',
            user: null,
            role: null,
            client_address: req.socket.remoteAddress ?? null,
            user_agent: req.headers['user-agent'] ?? null,
          })
        return true
      }
      if (await dashboard(req, res)) return true
      const served = (await peopleApi(req, res)) || (await auditApi(req, res))
      // Reads of the audit trail are themselves audited: who looked at what.
      if (served && (req.url ?? '').startsWith('/_audit/api/')) {
        const reader = auditReader(req)
        record('audit.read', {
          method: req.method ?? 'GET',
          // Never a credential in the log, wherever the client put one (issue 9 class 4).
          path: stripUrlCredentials(req.url ?? ''),
          status: res.statusCode,
          user: reader?.user ?? 'local',
          auth_method: reader?.auth_method ?? config.auth.mode,
          client_address: req.socket.remoteAddress ?? null,
        })
      }
      return served
    },
    now: options.now,
    logger,
    upstreamTimeoutMs: config.comfyui.timeoutMillis,
    claimPromptId: (id) => capture.claimPromptId(id),
    onRefused: (r) => refusals.refused({ ...r, user: null, role: null }),
    sealSubmission: (e) =>
      submissionSeal.seal(e.promptId, {
        submitter: e.submitter,
        upstream_client_id: e.upstreamClientId,
        submitted_at_ms: e.timeMs,
        // Digesting costs about as much CPU as the parse the proxy already did; past this size (far beyond any
        // real graph; workflows travel in extra_data) the seal binds the prompt id only, and says so.
        prompt_digest: e.bodyBytes <= MAX_DIGESTED_PROMPT_BYTES ? promptDigest(e.prompt) : null,
      }),
    state: {
      load: async () => {
        const v = await store.getState(CLIENT_IDS_STATE_KEY)
        return Array.isArray(v) ? v.filter((x): x is string => typeof x === 'string') : []
      },
      save: async (ids) => store.setState(CLIENT_IDS_STATE_KEY, ids),
    },
  })

  // Let the first connection to ComfyUI settle, so a client connecting right after start is not refused
  // while the gateway's own observer socket is still opening. A ComfyUI that is down does not hold start-up.
  if (!gateway.upstreamHealthy) {
    await new Promise<void>((resolve) => {
      const timer = setTimeout(done, 3000)
      const off = gateway.on('upstream', ({ healthy }) => healthy && done())
      function done(): void {
        clearTimeout(timer)
        off()
        resolve()
      }
    })
  }

  // Take back the sessions a previous process left open, so their remaining frames attach to them.
  const open = await store.sessions({ origin: store.origin, status: ['queued', 'running'], limit: 10_000 })
  // The process that forwarded these is gone, and with it any answer ComfyUI had still to give: one that
  // ComfyUI neither queued nor finished never will be (issue 10 item 3: such prompts stayed queued for ever).
  const inheritedIds = new Set(open.map((s) => s.session_id))
  if (open.length > 0) {
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

  // Close what a previous run left open (restart) and flag prompts that bypassed the gateway.
  const reconcile = async (restarted: boolean): Promise<void> => {
    // Open sessions first, then the queue, then history: a prompt that finishes in between is then in the history
    // we read (ComfyUI writes history before it leaves the queue), and one accepted after the queue was read is
    // left alone, so neither is wrongly called lost. The resumed sessions must be known first.
    await capture.flush()
    const candidates = new Set(capture.openSessions().map((o) => o.session_id))
    // Only sessions ComfyUI had already accepted may be called lost: it queues a prompt before answering 200, so
    // such a prompt is in the queue read next or in history. One whose 200 arrives after the queue read is in
    // neither without being lost (issue 10 item 3: under load this closed dozens of running prompts as lost).
    // History still closes the others.
    const mayBeLost = new Set(
      capture
        .openSessions()
        .filter((o) => o.accepted || inheritedIds.has(o.session_id))
        .map((o) => o.session_id),
    )
    const queue = await fetchJson(`/queue`, 10_000)
    const history = await fetchJson(`/history?max_items=1000`, 30_000)
    if (history === null || typeof history !== 'object' || Array.isArray(history)) return
    // Open sessions older than the window read above: ask for each one, so none is called lost by mistake.
    const queued = JSON.stringify(queue ?? '')
    for (const open of capture.openSessions()) {
      if (!candidates.has(open.session_id)) continue
      if (open.session_id in history || queued.includes(open.session_id)) continue
      const one = await fetchJson(`/history/${encodeURIComponent(open.session_id)}`, 10_000)
      if (one === null) return // ComfyUI did not answer: decide nothing this time
      if (typeof one === 'object' && !Array.isArray(one) && one[open.session_id] !== undefined) {
        history[open.session_id] = one[open.session_id]!
      }
    }
    capture.reconcile({
      history,
      queue,
      sessionIds: candidates,
      mayBeLost,
      comfyRestarted: restarted,
      // Capture's index knows every id the log ever held, so no pruned or erased session comes back.
      detectBypass: true,
    })
  }
  reconcile(true).catch((err: unknown) => reportError(err, 'reconcile at start'))
  // ComfyUI came back after being unreachable: it may have restarted and lost its queue and history.
  let upstreamWasDown = !gateway.upstreamHealthy
  gateway.on('upstream', ({ healthy }) => {
    // A ComfyUI that went away may come back as another version, on other devices, with other node packs.
    if (!healthy || upstreamWasDown) forgetEnvironment()
    if (healthy && upstreamWasDown)
      reconcile(true).catch((err: unknown) => reportError(err, 'reconcile after reconnect'))
    upstreamWasDown = !healthy
  })
  const sweepEvery = options.sweepIntervalMillis ?? 30_000
  const sweep =
    sweepEvery > 0
      ? setInterval(() => reconcile(false).catch((err: unknown) => reportError(err, 'reconcile')), sweepEvery)
      : null
  sweep?.unref()

  record('gateway.started', {
    origin: store.origin,
    listen: gateway.url,
    comfyui: stripUrlCredentials(upstream),
    store: store.dialect,
    auth_mode: config.auth.mode,
    sinks: config.sinks.map((sink) => `${sink.type}:${sinkName(sink)}`),
    retention_days: config.retention.days ?? null,
    verifier_key: key.verifierKey,
  })

  // People changed with the CLI (another process) reach the log through the directory's change journal.
  const JOURNAL_STATE_KEY = 'identity.changes_logged'
  let journalRunning: Promise<void> | null = null
  const logPersonChanges = (): Promise<void> =>
    (journalRunning ??= (async () => {
      try {
        const last = await store.getState(JOURNAL_STATE_KEY)
        const changes = await authenticator.directory.changesSince(typeof last === 'number' ? last : 0)
        if (changes.length === 0) return
        const time = new Date(options.now?.() ?? Date.now()).toISOString()
        await append(
          changes.map((c) => ({
            kind: 'security.person_changed' as const,
            time,
            session_id: null,
            payload: { ...c },
          })),
        )
        await store.setState(JOURNAL_STATE_KEY, changes[changes.length - 1]!.seq)
      } catch (err) {
        reportError(err, 'logging people changes')
      } finally {
        journalRunning = null
      }
    })())
  await logPersonChanges()
  const journalTimer = setInterval(() => void logPersonChanges(), 5000)
  journalTimer.unref()

  // Retention runs inside the gateway, through its own store, so it never competes for sequence numbers.
  let retentionTimer: NodeJS.Timeout | null = null
  if (config.retention.days !== undefined) {
    const keepMillis = retentionMillis(config.retention.days)
    const jsonlDirs = config.sinks
      .filter((sink) => sink.type === 'jsonl')
      .map((sink) => (sink.type === 'jsonl' && sink.dir) || join(config.data, 'jsonl', sinkName(sink)))
    let running: Promise<void> | null = null
    const pass = (): void => {
      running ??= runRetention({ store, keepMillis, jsonlDirs, user: 'gateway:retention' })
        .then((r) => {
          if (r.store.pruned > 0 || r.files.length > 0) {
            logger.info(
              `retention: removed ${r.store.pruned} payloads and ${r.files.length} JSONL files before ${r.before}`,
            )
          }
        })
        .catch((err: unknown) => reportError(err, 'retention'))
        .finally(() => {
          running = null
        })
    }
    pass()
    retentionTimer = setInterval(pass, config.retention.checkIntervalMillis)
    retentionTimer.unref()
  }

  let closing: Promise<void> | null = null
  return {
    gateway,
    store,
    capture,
    ledger,
    metrics,
    sinks,
    provenanceIdle: async () => {
      await capture.flush()
      await store.flush()
      if (enricher) await enricher.idle()
      await store.flush()
    },
    url: gateway.url,
    async reconcileNow() {
      await reconcile(false)
      await capture.flush()
      await store.flush()
    },
    close() {
      closing ??= (async () => {
        draining = true
        shuttingDown.abort()
        if (sweep) clearInterval(sweep)
        if (retentionTimer) clearInterval(retentionTimer)
        clearInterval(journalTimer)
        await gateway.close({ drainMs: config.drainMillis })
        await capture.flush()
        capture.close()
        await offThread.close()
        await logPersonChanges()
        refusals.close()
        record('gateway.stopped', { origin: store.origin })
        await store.flush()
        // Hashes still running get a bounded wait; a later start re-hashes nothing it already has (cache).
        if (enricher) await Promise.race([enricher.idle(), new Promise((r) => setTimeout(r, 10_000).unref())])
        offEnricher()
        await store.flush()
        await ledger.close()
        await fileHasher.close()
        // The last commits have reached the sinks; deliver what they can, spool the rest for the next start.
        offCommitted()
        await sinks.shutdown()
        try {
          await store.close()
        } finally {
          lock.release()
        }
      })()
      return closing
    },
  }
}
