/** The parts the access guard is composed of, built once by `createAccessGuard` and shared by its checks. */
import type { Logger } from '../audit/report-error.js'
import type { AuthConfig, LimitsConfig } from '../config/security-config.js'
import type { Authenticator } from './authenticator.js'
import type { GuardRefusals } from './guard-refusals.js'
import type { LookUpFacts } from './policy-facts.js'
import type { PolicyOptions } from './policy.js'
import type { TakePromptToken } from './prompt-rate-limit.js'
import type { OriginChecks } from './request-origin.js'

/** Everything a request or upgrade check needs; see `AccessGuardOptions` for the settings. */
export interface GuardContext {
  readonly auth: AuthConfig
  readonly limits: LimitsConfig
  readonly authenticator: Authenticator
  readonly multiUser: boolean
  readonly logger: Logger
  readonly policy: PolicyOptions
  readonly origin: OriginChecks
  readonly refuse: GuardRefusals
  readonly takePromptToken: TakePromptToken
  readonly lookUpFacts: LookUpFacts
  /** Who submitted a prompt, as recorded (the store's session submitter); null when unknown. */
  readonly promptOwner: (promptId: string) => Promise<string | null>
  /** Audit paths admitted without a person, besides the policy's public ones. */
  readonly publicPaths: ReadonlySet<string>
}
