/**
 * The gateway's admission control: for every request and WebSocket upgrade, before anything reaches ComfyUI,
 * it checks Host (DNS rebinding) and Origin (CSRF), the body size, authenticates the sender, applies the role
 * policy (deny, rewrite a global interrupt, narrow what an artist sees), limits `POST /prompt` per person,
 * refuses path traversal through uploads, and removes every credential from the request.
 *
 * This module only composes the parts: the checks live in admit-request.ts and admit-upgrade.ts, the reads
 * from ComfyUI in upstream-lookups.ts.
 */
import { silentLogger, type Logger } from '../audit/report-error.js'
import type { AuthConfig, LimitsConfig } from '../config/security-config.js'
import type { RequestGuard } from '../gateway/request-guard.js'
import { admitRequest } from './admit-request.js'
import { admitUpgrade } from './admit-upgrade.js'
import type { Authenticator } from './authenticator.js'
import type { GuardContext } from './guard-context.js'
import { createGuardRefusals } from './guard-refusals.js'
import { createOutputClientIds } from './output-owners.js'
import { createPolicyFacts } from './policy-facts.js'
import { createPromptRateLimit } from './prompt-rate-limit.js'
import type { Refusal } from './refusal-log.js'
import { createOriginChecks } from './request-origin.js'
import { createUpstreamLookups, type UpstreamLookups } from './upstream-lookups.js'

export { auditReader } from './audit-reader.js'

/** Options of {@link createAccessGuard}. */
interface AccessGuardOptions {
  readonly authenticator: Authenticator
  readonly auth: AuthConfig
  readonly limits: LimitsConfig
  /** ComfyUI runs with `--multi-user`: send `comfy-user: <person>` (client-supplied values are always removed). */
  readonly multiUser?: boolean
  /** The host the gateway listens on (its name is an allowed `Host`). */
  readonly listenHost: string
  /** ComfyUI's base URL: the guard reads `/queue` to see who runs what. */
  readonly upstreamUrl: string
  /** Who submitted a prompt, as recorded (the store's session submitter); null when unknown. */
  readonly promptOwner: (promptId: string) => Promise<string | null>
  /** Epoch ms clock (rate limit). */
  readonly now?: () => number
  readonly logger?: Logger
  /**
   * Audit paths that check their own credentials (e.g. `/_audit/metrics` with `metrics.token`): admitted
   * without a person, like the login page and the health probes.
   */
  readonly publicPaths?: readonly string[]
  /** Timeout of the guard's own reads from ComfyUI, ms (default 5000). */
  readonly upstreamTimeoutMillis?: number
  /** Reads ComfyUI's queue and history some other way; `upstreamUrl` and `upstreamTimeoutMillis` are then unused. */
  readonly upstream?: UpstreamLookups
  /**
   * Told of every refused request and upgrade (see `createRefusalLog`, which records them rate-limited).
   * When given, the guard does not log refusals itself: a flood would fill the log as much as the store.
   */
  readonly onRefused?: (refusal: Refusal) => void
}

/** Builds the guard the gateway runs before everything else (see the module comment). */
export function createAccessGuard(options: AccessGuardOptions): RequestGuard {
  const { auth, limits } = options
  const now = options.now ?? Date.now
  const logger = options.logger ?? silentLogger
  const policy = { visibility: auth.visibility, adminOnlyPaths: auth.adminOnlyPaths }
  const upstream =
    options.upstream ??
    createUpstreamLookups({
      upstreamUrl: options.upstreamUrl,
      timeoutMillis: options.upstreamTimeoutMillis ?? 5000,
    })
  const ctx: GuardContext = {
    auth,
    limits,
    authenticator: options.authenticator,
    multiUser: options.multiUser ?? false,
    logger,
    policy,
    origin: createOriginChecks({
      listenHost: options.listenHost,
      allowedHosts: auth.allowedHosts,
      allowedOrigins: auth.allowedOrigins,
    }),
    refuse: createGuardRefusals({ logger, ...(options.onRefused ? { onRefused: options.onRefused } : {}) }),
    takePromptToken: createPromptRateLimit(limits, now),
    lookUpFacts: createPolicyFacts({
      policy,
      upstream,
      outputClientIds: createOutputClientIds(upstream, now),
      promptOwner: options.promptOwner,
    }),
    promptOwner: options.promptOwner,
    publicPaths: new Set(options.publicPaths ?? []),
  }
  return {
    admitRequest: (req, res) => admitRequest(ctx, req, res),
    admitUpgrade: (req, socket) => admitUpgrade(ctx, req, socket),
  }
}
