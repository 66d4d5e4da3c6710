/**
 * The composition root: the one place that knows concrete stores, capture and the proxy, and wires them. It
 * holds construction and shutdown order only; what runs between lives in src/root/ behind narrow ports.
 */
import { mkdirSync } from 'node:fs'
import type { IncomingMessage } from 'node:http'
import { reportError, silentLogger, type Logger } from './audit/report-error.js'
import type { AuditEventInput, Submitter } from './audit/types.js'
import { createCapture, type Capture } from './capture/capture.js'
import { createSubmissionSeal, sealSecretFromSigner } from './capture/submission-seal.js'
import { parseHostPort, sinkName, type Config } from './config/config.js'
import { createGateway, type Gateway } from './gateway/create-gateway.js'
import { createOffThreadPromptAnalyzer } from './identity/off-thread-analysis.js'
import { redactingLogger } from './identity/redacting-logger.js'
import { createRedactor, stripUrlCredentials } from './identity/redaction.js'
import type { RefusalLog } from './identity/refusal-log.js'
import type { Ledger } from './ledger/ledger.js'
import { queueDepthFromFrame, type Metrics } from './metrics/metrics.js'
import { retentionMillis } from './query/retention-job.js'
import { createAccess } from './root/access.js'
import { createAnswerGate, type AnswerGate } from './root/answer-gate.js'
import { createComfyReader } from './root/comfy-reader.js'
import { createEnvironmentProbe } from './root/environment-probe.js'
import { startPeopleJournal, type PeopleJournal } from './root/people-journal.js'
import { jsonlSinkDirs } from './root/presets.js'
import { startProvenance, type RootProvenance } from './root/provenance-wiring.js'
import { createReconciler, scheduleReconciliation, settleUpstream } from './root/reconciliation.js'
import { openRecording, type Recording } from './root/recording.js'
import { clientIdState, loadKnownPrompts, resumeOpenSessions } from './root/resume-sessions.js'
import { startRetentionTimer } from './root/retention-timer.js'
import { sealSubmissions } from './root/submission-sealing.js'
import type { SinkPipeline } from './sinks/sink-pipeline.js'
import { acquireDirLock, type DirLock } from './store/data-dir-lock.js'
import type { RuntimeStore } from './store/runtime-store.js'

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

const DEFAULT_SWEEP_INTERVAL_MILLIS = 30_000
/** How often people changed by another process (the CLI) are looked for. */
const PEOPLE_JOURNAL_INTERVAL_MILLIS = 5000
/** Longest start-up waits for the first connection to ComfyUI. */
const UPSTREAM_SETTLE_MILLIS = 3000
/** Longest shutdown waits for hashes still running. */
const PROVENANCE_SHUTDOWN_WAIT_MILLIS = 10_000

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
  // events go through `events.append`) and every log line, whichever component writes it.
  const redaction = createRedactor(config.redaction)
  // Large prompt bodies are parsed and redacted on a worker thread, so the proxy keeps answering meanwhile.
  const offThread = createOffThreadPromptAnalyzer(config.redaction)
  // ... and only once ComfyUI's answer to the prompt is on its way to the client (root/answer-gate.ts).
  const answerGate = createAnswerGate()
  const logger = redactingLogger(options.logger ?? silentLogger, redaction.text)
  const upstream = config.comfyui.url.replace(/\/+$/, '')
  const comfy = createComfyReader(upstream)
  const recording = await openRecording(config, { logger, redactText: redaction.text, now: options.now })
  const { store, metrics, events, key } = recording
  const append = (e: AuditEventInput[]): Promise<unknown> => events.append(e)
  const provenance = startProvenance({ config, store, append, comfy, comfyUrl: upstream, now: options.now })
  const submissionSeal = createSubmissionSeal({
    origin: store.origin,
    secret: sealSecretFromSigner(key.signer),
  })
  const environment = createEnvironmentProbe(comfy, () => capture)
  const capture = createCapture({
    submissionSeal,
    origin: store.origin,
    now: options.now,
    // Capture emits events in order; the runtime store assigns sequence numbers in call order and
    // group-commits. Nothing on the proxy path waits for this promise.
    emit: (e) => void store.append(e).catch((err: unknown) => reportError(err, 'store append')),
    gpuSampleIntervalMillis: config.capture.gpuSampleIntervalMillis,
    maxInputStringLength: config.capture.maxInputLength,
    // Secrets, e-mail addresses and home-directory user names leave before anything is hashed or stored.
    redact: redaction,
    analyzePromptBody: async (body, opts) => {
      await answerGate.whenAnswered(body)
      return offThread.analyze(body, opts)
    },
    redactText: redaction.text,
    environmentTtlMillis: config.capture.environmentTtlMillis,
    onRedactedFile: provenance.onRedactedFile,
    sampleGpu: environment.sampleGpu,
    environment: environment.environment,
  })
  const { host } = parseHostPort(config.listen)
  // The access checks ask the proxy's health, and the proxy is built with the checks: a late reference.
  const built: { gateway?: Gateway } = {}
  const access = createAccess(config, {
    recording,
    capture,
    logger,
    upstream,
    listenHost: host,
    upstreamHealthy: () => built.gateway?.upstreamHealthy ?? false,
    now: options.now,
  })
  const { refusals } = access
  await loadKnownPrompts(store, capture)
  const gateway = await startProxy(config, options, {
    capture,
    recording,
    access,
    submissionSeal,
    answerGate,
    logger,
    upstream,
  })
  built.gateway = gateway
  const proxy = gateway
  await settleUpstream(proxy, UPSTREAM_SETTLE_MILLIS)
  await resumeOpenSessions(store, capture, logger)
  const reconcile = createReconciler({ capture, comfy })
  const stopReconciling = scheduleReconciliation({
    reconcile,
    upstream: proxy,
    sweepIntervalMillis: options.sweepIntervalMillis ?? DEFAULT_SWEEP_INTERVAL_MILLIS,
    onMaybeRestarted: environment.forget,
  })
  events.record('gateway.started', {
    origin: store.origin,
    listen: proxy.url,
    comfyui: stripUrlCredentials(upstream),
    store: store.dialect,
    auth_mode: config.auth.mode,
    sinks: config.sinks.map((sink) => `${sink.type}:${sinkName(sink)}`),
    retention_days: config.retention.days ?? null,
    verifier_key: key.verifierKey,
  })
  const journal = startPeopleJournal({
    store,
    directory: access.authenticator.directory,
    append,
    now: options.now,
    intervalMillis: PEOPLE_JOURNAL_INTERVAL_MILLIS,
  })
  await journal.sync()
  const stopRetention =
    config.retention.days === undefined
      ? () => {}
      : startRetentionTimer({
          store,
          keepMillis: retentionMillis(config.retention.days),
          jsonlDirs: jsonlSinkDirs(config),
          intervalMillis: config.retention.checkIntervalMillis,
          logger,
        })
  const stopTimers = (): void => {
    access.startDraining()
    stopReconciling()
    stopRetention()
    journal.stop()
  }
  const parts = {
    recording,
    capture,
    provenance,
    offThread,
    gateway: proxy,
    refusals,
    journal,
    lock,
    stopTimers,
  }
  let closing: Promise<void> | null = null
  return {
    gateway: proxy,
    store,
    capture,
    ledger: recording.ledger,
    metrics,
    sinks: recording.sinks,
    provenanceIdle: async () => {
      await capture.flush()
      await store.flush()
      await provenance.idle()
      await store.flush()
    },
    url: proxy.url,
    async reconcileNow() {
      await reconcile(false)
      await capture.flush()
      await store.flush()
    },
    close: () => (closing ??= shutdown(config, parts)),
  }
}

/** The proxy, wired to capture (every tap), the metrics, the access checks and the store's outage policy. */
function startProxy(
  config: Readonly<Config>,
  options: AuditGatewayOptions,
  parts: {
    readonly capture: Capture
    readonly recording: Recording
    readonly access: ReturnType<typeof createAccess>
    readonly submissionSeal: ReturnType<typeof createSubmissionSeal>
    readonly answerGate: AnswerGate
    readonly logger: Logger
    readonly upstream: string
  },
): Promise<Gateway> {
  const { capture, recording, access, submissionSeal, answerGate, logger, upstream } = parts
  const { store, metrics } = recording
  const { host, port } = parseHostPort(config.listen)
  return createGateway({
    upstreamUrl: upstream,
    host,
    port,
    tap: {
      promptSubmitted: (e) => {
        answerGate.submitted(e.promptId, [e.body, e.forwardedBody])
        capture.promptSubmitted(e)
      },
      promptAnswered: (e) => {
        capture.promptAnswered(e)
        answerGate.answered(e.promptId)
      },
      promptRefused: (e) => capture.promptRefused(e),
      frame: (e) => {
        const depth = queueDepthFromFrame(e.frame)
        if (depth !== undefined) metrics.setQueueDepth(depth)
        capture.frame(e)
      },
      action: (e) => capture.action(e),
    },
    ...(options.identify ? { identify: options.identify } : { guard: access.guard }),
    maxClientFrameBytes: config.limits.maxWsFrameBytes,
    onRequestDone: (e) => metrics.observeRequest(e.method, e.route, e.status, e.seconds),
    maxPromptBytes: config.limits.maxBodyBytes,
    headersTimeoutMillis: config.limits.headersTimeoutMillis,
    requestTimeoutMillis: config.limits.requestTimeoutMillis,
    unauthenticatedIdleMillis: config.limits.unauthenticatedIdleMillis,
    // Fail closed (default): a prompt that could not be recorded is not run. Synchronous, no disk.
    refusePrompt: () => {
      if (config.store.outage.whenFull !== 'refuse' || store.health().state !== 'over-quota') return null
      metrics.promptRefused('store')
      return 'the audit store is unavailable and its write-ahead spool is full (store.outage.spoolMaxBytes)'
    },
    auditHandler: access.auditHandler,
    now: options.now,
    logger,
    upstreamTimeoutMillis: config.comfyui.timeoutMillis,
    // Capture alone answers "is this prompt id known?"; the hub tells it what ComfyUI holds.
    promptIds: capture,
    onRefused: (r) => access.refusals.refused({ ...r, user: null, role: null }),
    sealSubmission: sealSubmissions(submissionSeal),
    state: clientIdState(store),
  })
}

/** Shutdown order: stop taking work, drain the proxy, flush capture, then the log, then the sinks. */
async function shutdown(
  config: Readonly<Config>,
  parts: {
    recording: Recording
    capture: Capture
    provenance: RootProvenance
    offThread: { close(): Promise<void> }
    gateway: Gateway
    refusals: RefusalLog
    journal: PeopleJournal
    lock: DirLock
    stopTimers: () => void
  },
): Promise<void> {
  const { recording, capture, provenance } = parts
  const { store } = recording
  parts.stopTimers()
  await parts.gateway.close({ drainMillis: config.drainMillis })
  await capture.flush()
  capture.close()
  await parts.offThread.close()
  await parts.journal.sync()
  parts.refusals.close()
  recording.events.record('gateway.stopped', { origin: store.origin })
  await store.flush()
  await provenance.settle(PROVENANCE_SHUTDOWN_WAIT_MILLIS)
  await store.flush()
  await recording.ledger.close()
  await provenance.close()
  // The last commits have reached the sinks; deliver what they can, spool the rest for the next start.
  recording.offCommitted()
  await recording.sinks.shutdown()
  try {
    await store.close()
  } finally {
    parts.lock.release()
  }
}
