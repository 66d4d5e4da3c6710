import { readFileSync } from 'node:fs'
import { describe, expect, it } from 'vitest'
import { parseJson, sha256Hex } from '../audit/json.js'
import type { JsonValue } from '../audit/types.js'
import { analyzePrompt } from '../capture/prompt-analysis.js'
import { zRedactionConfig, type RedactionConfig } from '../config/security-config.js'
import { createRedactor, REDACTED } from './redaction.js'

function redactor(over: Partial<RedactionConfig> = {}): ReturnType<typeof createRedactor> {
  return createRedactor({ ...zRedactionConfig.parse({}), ...over })
}

const SECRETS = {
  openai: 'sk-proj-abcdefghijklmnopqrstuvwxyz0123456789',
  hf: 'hf_ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefgh',
  github: 'ghp_ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghij',
  aws: 'AKIAIOSFODNN7EXAMPLE',
  jwt: 'eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U',
  comfyAudit: 'AbCdEfGhIjKlMnOp.0123456789abcdefghijABCDEFGHIJ_-0123456789a',
}

describe('redaction policy', () => {
  it('replaces values under secret-looking keys at any depth, keeping numbers and flags', () => {
    const r = redactor({ keys: ['studio_pin'] })
    const out = r(
      {
        inputs: {
          api_key: 'plain-looking',
          openaiApiKey: 'x',
          hf_token: 'y',
          Authorization: 'Basic abc',
          password: 'hunter2',
          credentials: { user: 'u', pass: 'p' },
          studio_pin: '1234',
          max_token: 512,
          use_auth_token: true,
          token_normalization: 'mean',
          text: 'a cat',
        },
      },
      ['prompt'],
    )
    expect(out).toEqual({
      inputs: {
        api_key: REDACTED,
        openaiApiKey: REDACTED,
        hf_token: REDACTED,
        Authorization: REDACTED,
        password: REDACTED,
        credentials: REDACTED,
        studio_pin: REDACTED,
        max_token: 512,
        use_auth_token: true,
        token_normalization: 'mean',
        text: 'a cat',
      },
    })
  })

  it('replaces secret-looking substrings wherever they sit, including keyless workflow widget values', () => {
    const r = redactor()
    const values = Object.values(SECRETS)
    const out = JSON.stringify(
      r(
        {
          widgets_values: values.map((s) => `prefix ${s} suffix`),
          note: `curl -H "Authorization: Bearer ${SECRETS.comfyAudit}"`,
        },
        ['extra_data'],
      ),
    )
    for (const s of values) expect(out).not.toContain(s)
    expect(out).toContain(`prefix ${REDACTED} suffix`)
  })

  it('removes credentials in URLs and query strings but keeps the rest', () => {
    const r = redactor()
    expect(r.text('https://bob:s3cret@example.com/x?token=abc123&size=2')).toBe(
      `https://bob:${REDACTED}@example.com/x?token=${REDACTED}&size=2`,
    )
  })

  it('replaces e-mail addresses unless turned off', () => {
    expect(redactor().text('ask alice.smith+x@studio.example.com')).toBe(`ask ${REDACTED}`)
    expect(redactor({ emails: false }).text('alice@studio.example')).toBe('alice@studio.example')
  })

  it('applies configured value patterns', () => {
    expect(redactor({ valuePatterns: ['PROJ-\\d{4}'] }).text('ticket PROJ-1234 done')).toBe(
      `ticket ${REDACTED} done`,
    )
  })

  it('masks user names in home-directory paths of recorded tracebacks', () => {
    const r = redactor()
    const lines = readFileSync(
      new URL('../../fixtures/comfyui-0.8.0/trace.jsonl', import.meta.url),
      'utf8',
    ).split('\n')
    const withHome = lines.find((l) => l.includes('/home/artist/') && l.includes('traceback'))
    expect(withHome).toBeDefined()
    const parsed = parseJson(Buffer.from(withHome!))
    if (!parsed.ok) throw new Error(parsed.reason)
    const out = JSON.stringify(r(parsed.value, ['error']), (_k, v: unknown) =>
      typeof v === 'bigint' ? v.toString() : v,
    )
    expect(out).not.toContain('/home/artist/')
    expect(out).toContain('/home/<redacted>/ComfyUI/')
    expect(r.text('C:\\Users\\jdoe\\ComfyUI\\main.py and /Users/jdoe/x')).toBe(
      'C:\\Users\\<redacted>\\ComfyUI\\main.py and /Users/<redacted>/x',
    )
    expect(redactor({ maskHomePaths: false }).text('/home/artist/x')).toBe('/home/artist/x')
  })

  it('truncates long values after removing secrets, so no secret is ever hashed', () => {
    const r = redactor({ maxValueLength: 20 })
    const long = `${'a'.repeat(30)} ${SECRETS.openai}`
    const out = r({ text: long, short: 'ok' }, ['prompt']) as Record<string, JsonValue>
    const cleaned = `${'a'.repeat(30)} ${REDACTED}`
    expect(out).toEqual({
      short: 'ok',
      text: { truncated: true, length: cleaned.length, sha256: sha256Hex(cleaned) },
    })
    expect(JSON.stringify(out)).not.toContain(sha256Hex(long))
  })

  it("plugs into capture's redact hook: stored prompt and hashes hold no secret", () => {
    const prompt = {
      '1': { class_type: 'LLMNode', inputs: { api_key: SECRETS.openai, prompt: `use ${SECRETS.hf}` } },
    }
    const extra = {
      extra_pnginfo: { workflow: { nodes: [{ widgets_values: [SECRETS.github] }] } },
      api_key_comfy_org: 'comfy-secret',
    }
    const a = analyzePrompt(prompt, extra, redactor())
    const stored = JSON.stringify([a.prompt, a.extra_data, a.workflow])
    for (const s of [SECRETS.openai, SECRETS.hf, SECRETS.github, 'comfy-secret'])
      expect(stored).not.toContain(s)
    expect(a.prompt_sha256).toMatch(/^[0-9a-f]{64}$/)
  })
})
