import { describe, expect, it } from 'vitest'
import { nestedQuantifier, zLimitsConfig, zRedactionConfig } from './security-config.js'

describe('issue 9 class 5: configured patterns and client timeouts', () => {
  it.each(['(a+)+$', '(\\w+\\s?)*x', '((ab)*c)+', '(?:[a-z]+,){2,}', '(x+){1,}'])(
    'refuses a configured pattern with nested repetition: %s',
    (pattern) => {
      expect(nestedQuantifier(pattern)).not.toBeNull()
      const r = zRedactionConfig.safeParse({ valuePatterns: [pattern] })
      expect(r.success).toBe(false)
      expect(r.error?.issues[0]?.message).toContain('exponential time')
      expect(zRedactionConfig.safeParse({ keyPatterns: [pattern] }).success).toBe(false)
    },
  )

  it.each(['PROJ-\\d{4}', '(?:sk|pk)_[A-Za-z0-9]{20,}', '(\\d{4}-)+x', '[(+]+', '\\(a+\\)+', '(ab)?c+'])(
    'accepts a pattern without nested repetition: %s',
    (pattern) => {
      expect(nestedQuantifier(pattern)).toBeNull()
      expect(zRedactionConfig.safeParse({ valuePatterns: [pattern] }).success).toBe(true)
    },
  )

  it('has documented timeout defaults and refuses a header timeout above the request timeout', () => {
    expect(zLimitsConfig.parse({})).toMatchObject({
      headersTimeoutMillis: 20_000,
      requestTimeoutMillis: 300_000,
      unauthenticatedIdleMillis: 30_000,
    })
    expect(zRedactionConfig.parse({}).timeBudgetMillis).toBe(1000)
    const bad = zLimitsConfig.safeParse({ headersTimeoutMillis: 5000, requestTimeoutMillis: 1000 })
    expect(bad.success).toBe(false)
    expect(bad.error?.issues[0]?.path).toEqual(['headersTimeoutMillis'])
    expect(zLimitsConfig.safeParse({ headersTimeoutMillis: 5000, requestTimeoutMillis: 0 }).success).toBe(
      true,
    )
  })
})
