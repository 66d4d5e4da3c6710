import { describe, expect, it } from 'vitest'
import { zRedactionConfig } from '../config/security-config.js'
import { createRedactor } from '../identity/redaction.js'
import { redactPayload, redactString } from './redact-event.js'

const { text } = createRedactor(zRedactionConfig.parse({}))
const KEY = 'sk-proj-0123456789abcdefghijABCDEFGHIJ'

describe('redactPayload', () => {
  it('redacts every string at any depth, keeping person names, numbers and analyzed prompt members', () => {
    const payload = {
      path: `/x?note=${KEY}`,
      submitter: { user: 'ada@studio.example', user_agent: `tool ${KEY}`, client_id: null },
      session: {
        status: 'error',
        // Already through the whole policy in capture's prompt analysis: not walked again.
        prompt: { '1': { inputs: { text: 'kept as analysis left it' } } },
        outputs: [{ filename: `${KEY}_00001_.png`, subfolder: '', type: 'output', node_id: '9' }],
      },
      seq: 12,
      big: 18446744073709551615n,
      person: 'bob@studio.example',
    }
    expect(redactPayload(payload, text)).toEqual({
      path: '/x?note=[REDACTED]',
      submitter: { user: 'ada@studio.example', user_agent: 'tool [REDACTED]', client_id: null },
      session: {
        status: 'error',
        prompt: { '1': { inputs: { text: 'kept as analysis left it' } } },
        outputs: [{ filename: '[REDACTED].png', subfolder: '', type: 'output', node_id: '9' }],
      },
      seq: 12,
      big: 18446744073709551615n,
      person: 'bob@studio.example',
    })
  })
})

describe('redactString', () => {
  it('judges percent-encoded runs decoded and writes them back encoded', () => {
    const url = `/_audit/api/sessions?x=${encodeURIComponent('https://svc:hunter2pw@models.example.com/a')}&y=${encodeURIComponent(KEY)}`
    const out = redactString(url, text)
    expect(out).not.toContain('hunter2pw')
    expect(out).not.toContain('0123456789abcdefghij')
    expect(decodeURIComponent(out)).toBe(
      '/_audit/api/sessions?x=https://svc:[REDACTED]@models.example.com/a&y=[REDACTED]',
    )
  })

  it('leaves encoded text without a secret, and malformed escapes, exactly as they were', () => {
    for (const s of ['/view?filename=a%20b.png&type=output', 'odd %zz and 100% done', 'plain']) {
      expect(redactString(s, text)).toBe(s)
    }
  })

  it('stays linear on a long value full of escapes', () => {
    const long = '%41'.repeat(300_000) + '?a=' + 'b%'.repeat(300_000)
    const started = performance.now()
    redactString(long, text)
    // Generous: a quadratic scan of 1.5 MB would take minutes, not seconds.
    expect(performance.now() - started).toBeLessThan(20_000)
  })
})
