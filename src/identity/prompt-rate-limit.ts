/** Per-person limit on `POST /prompt`: a token bucket refilled continuously. */
import type { LimitsConfig } from '../config/security-config.js'

/** Takes one prompt from `user`'s bucket; false when it is empty. */
export type TakePromptToken = (user: string) => boolean

/** Builds the limiter; `promptsPerMinute <= 0` turns it off. */
export function createPromptRateLimit(
  limits: Pick<LimitsConfig, 'promptsPerMinute' | 'promptBurst'>,
  now: () => number,
): TakePromptToken {
  const buckets = new Map<string, { tokens: number; at: number }>()
  return (user) => {
    if (limits.promptsPerMinute <= 0) return true
    const t = now()
    const b = buckets.get(user) ?? { tokens: limits.promptBurst, at: t }
    b.tokens = Math.min(limits.promptBurst, b.tokens + ((t - b.at) / 60_000) * limits.promptsPerMinute)
    b.at = t
    buckets.set(user, b)
    if (b.tokens < 1) return false
    b.tokens -= 1
    return true
  }
}
