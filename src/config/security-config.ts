/**
 * The `auth`, `redaction` and `limits` sections of the config schema (see config.ts, which embeds them).
 * Kept in their own module so the identity and hardening settings read as one piece.
 */
import { z } from 'zod'

import { ROLES } from './roles.js'

export { ROLES, type Role } from './roles.js'

/** How the gateway learns who sends a request. */
const AUTH_MODES = ['none', 'token', 'trusted-header'] as const

const IPV4_CIDR = /^(\d{1,3})(\.\d{1,3}){3}(\/\d{1,2})?$/
const IPV6_CIDR = /^[0-9a-fA-F:.]+(\/\d{1,3})?$/

const zCidr = z.string().refine((s) => IPV4_CIDR.test(s) || (s.includes(':') && IPV6_CIDR.test(s)), {
  message: 'expected an address or CIDR, e.g. 10.0.0.5 or 10.0.0.0/8 or ::1',
})

/**
 * Why a pattern could take exponential time on a backtracking engine, or null: a repeated group that itself
 * holds an unbounded repetition (`(a+)+`, `(\w+\s?)*`, `((ab)*c)+`). A heuristic: it proves no pattern linear
 * (overlapping alternatives such as `(a|ab)*` pass), and the redaction time budget still bounds the rest
 * (issue 9 class 5).
 */
export function nestedQuantifier(source: string): string | null {
  const groups: { unbounded: boolean }[] = []
  let i = 0
  const quantifierAt = (j: number): { unbounded: boolean; length: number } | null => {
    const c = source[j]
    if (c === '+' || c === '*') return { unbounded: true, length: 1 }
    if (c === '?') return { unbounded: false, length: 1 }
    if (c === '{') {
      const m = /^\{(\d+)(,(\d*))?\}/.exec(source.slice(j, j + 24))
      if (m)
        return { unbounded: m[2] !== undefined && (m[3] === '' || Number(m[3]) > 1), length: m[0].length }
    }
    return null
  }
  while (i < source.length) {
    const c = source[i]
    if (c === '\\') {
      i += 2
    } else if (c === '[') {
      i++
      while (i < source.length && source[i] !== ']') i += source[i] === '\\' ? 2 : 1
      i++
    } else if (c === '(') {
      groups.push({ unbounded: false })
      i++
      continue
    } else if (c === ')') {
      const group = groups.pop()
      i++
      const q = quantifierAt(i)
      if (group?.unbounded && q?.unbounded)
        return `a repeated group holding a repetition, before position ${i}`
      if (group && groups.length > 0 && (group.unbounded || q?.unbounded)) groups.at(-1)!.unbounded = true
      if (q) i += q.length
      continue
    } else {
      i++
    }
    const q = quantifierAt(i)
    if (q) {
      if (q.unbounded && groups.length > 0) groups.at(-1)!.unbounded = true
      i += q.length
    }
  }
  return null
}

const zRegexSource = z
  .string()
  .refine(
    (s) => {
      try {
        new RegExp(s, 'giu')
        return true
      } catch {
        return false
      }
    },
    { message: 'expected a valid regular expression' },
  )
  .superRefine((s, ctx) => {
    const why = nestedQuantifier(s)
    if (why !== null)
      ctx.addIssue({
        code: 'custom',
        message: `${JSON.stringify(s)} can take exponential time (${why}): every value passes through it; write it without nested repetition`,
      })
  })

/** `auth`: authentication mode, sessions, trusted proxies, what artists see. */
export const zAuthConfig = z
  .object({
    /** `none` (loopback only), `token` (API tokens, browser login) or `trusted-header` (an SSO proxy in front). */
    mode: z.enum(AUTH_MODES).default('none'),
    /** Allow `mode: none` on a non-loopback address (everyone on the network becomes `local`). Default false. */
    allowInsecure: z.boolean().default(false),
    /** Header carrying the person's name in `trusted-header` mode (default `X-Forwarded-User`). */
    trustedHeader: z.string().min(1).default('X-Forwarded-User'),
    /** Addresses or CIDRs of the proxies whose identity header is believed; from anywhere else it is ignored. */
    trustedProxies: z.array(zCidr).default([]),
    /** Role given to an unknown name from a trusted proxy; without it unknown names are refused. */
    autoProvisionRole: z.enum(ROLES).optional(),
    /** Lifetime of a browser login session, ms (default 12 h). */
    sessionTtlMillis: z
      .number()
      .int()
      .positive()
      .default(12 * 3600_000),
    /** How long a verified token is remembered in memory, ms (default 30 s); a disable drops it at once. */
    tokenCacheMillis: z.number().int().min(0).default(30_000),
    /** Name of the session cookie. */
    cookieName: z
      .string()
      .regex(/^[A-Za-z0-9_-]+$/)
      .default('comfy_audit_session'),
    /** `own`: artists see only their own prompts in /history, /queue, /api/jobs and /view. Default `all`. */
    visibility: z.enum(['all', 'own']).default('all'),
    /**
     * Host names (with or without port) the gateway answers to besides its listen address and `localhost`;
     * any other `Host` on a state-changing request or WebSocket upgrade is refused (DNS rebinding).
     */
    allowedHosts: z.array(z.string().min(1)).default([]),
    /** Extra origins (`https://studio.example`) allowed to send state-changing requests. */
    allowedOrigins: z.array(z.string().url()).default([]),
    /** Path prefixes only admins may use, added to the built-in list (ComfyUI-Manager, /internal, /free, ...). */
    adminOnlyPaths: z.array(z.string().startsWith('/')).default([]),
  })
  .prefault({})
export type AuthConfig = z.infer<typeof zAuthConfig>

/** `redaction`: what is removed from prompts, extra_data, workflows and errors before anything is stored. */
export const zRedactionConfig = z
  .object({
    /** Key names whose values are secrets, compared case-insensitively (added to the built-in pattern). */
    keys: z.array(z.string().min(1)).default([]),
    /** Regular expressions over key names; a matching key's string value is replaced. */
    keyPatterns: z.array(zRegexSource).default([]),
    /** Regular expressions over string values; every match is replaced (API keys, tokens, ...). */
    valuePatterns: z.array(zRegexSource).default([]),
    /** Use the built-in key and value patterns (API keys, bearer tokens, JWTs, private keys). Default true. */
    builtinPatterns: z.boolean().default(true),
    /** Replace e-mail addresses. Default true. */
    emails: z.boolean().default(true),
    /** Replace the user name in home-directory paths (`/home/alice/` → `/home/<redacted>/`). Default true. */
    maskHomePaths: z.boolean().default(true),
    /** Longer strings are replaced by `{truncated, length, sha256}` (after secrets are removed); 0 = off. */
    maxValueLength: z.number().int().min(0).default(0),
    /**
     * Longest one redaction (a prompt, its extra_data, an error, a log line) may take, ms (default 1000; 0 =
     * no limit). Past it the whole value is stored as `[REDACTED: over the redaction time budget]`, never
     * unredacted: the built-in patterns are linear, but a configured `valuePatterns` entry may not be.
     */
    timeBudgetMillis: z.number().int().min(0).default(1000),
  })
  .prefault({})
export type RedactionConfig = z.infer<typeof zRedactionConfig>

/** `limits`: what one client may send. */
export const zLimitsConfig = z
  .object({
    /** Largest request body, bytes (default 100 MiB, ComfyUI's own `--max-upload-size`). */
    maxBodyBytes: z
      .number()
      .int()
      .positive()
      .default(100 * 1024 * 1024),
    /** Deepest nesting of a JSON body (default 64). */
    maxJsonDepth: z.number().int().positive().default(64),
    /** Largest WebSocket message a client may send, bytes (default 1 MiB). */
    maxWsFrameBytes: z
      .number()
      .int()
      .positive()
      .default(1024 * 1024),
    /** Sustained `POST /prompt` rate per person, per minute (default 120; 0 = unlimited). */
    promptsPerMinute: z.number().min(0).default(120),
    /** Burst of `POST /prompt` allowed above the sustained rate (default 30). */
    promptBurst: z.number().int().positive().default(30),
    /**
     * How refused requests are recorded: per person (or client address when unauthenticated) and reason, the
     * first `burst` one by one (`access.refused`), refilled at `perMinute`; past that they are counted and
     * summarised every `summaryIntervalMillis` (`access.refused.summary`: count and a sample).
     */
    refusals: z
      .object({
        burst: z.number().int().min(0).default(20),
        perMinute: z.number().min(0).default(6),
        summaryIntervalMillis: z.number().int().min(1000).default(60_000),
      })
      .prefault({}),
    /**
     * Longest a client may take to send a request's headers, ms (default 20 000); then the connection is
     * closed with 408 (slowloris). Checked at least every second.
     */
    headersTimeoutMillis: z.number().int().positive().default(20_000),
    /** Longest a client may take to send a whole request, body included, ms (default 300 000; 0 = no limit). */
    requestTimeoutMillis: z.number().int().min(0).default(300_000),
    /**
     * How long a connection on which no request has been admitted (nothing sent yet, or only refused
     * requests) may stay idle, ms (default 30 000). Admitted clients are bound by the keep-alive timeout.
     */
    unauthenticatedIdleMillis: z.number().int().positive().default(30_000),
  })
  .superRefine((v, ctx) => {
    if (v.requestTimeoutMillis > 0 && v.headersTimeoutMillis > v.requestTimeoutMillis) {
      ctx.addIssue({
        code: 'custom',
        path: ['headersTimeoutMillis'],
        message: `must not exceed limits.requestTimeoutMillis (${v.requestTimeoutMillis}), got ${v.headersTimeoutMillis}`,
      })
    }
  })
  .prefault({})
export type LimitsConfig = z.infer<typeof zLimitsConfig>
