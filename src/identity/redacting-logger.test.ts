import { describe, expect, it } from 'vitest'
import { zRedactionConfig } from '../config/security-config.js'
import { redactingErrorHandler, redactingLogger } from './redacting-logger.js'
import { createRedactor } from './redaction.js'

const KEY = 'sk-proj-0123456789abcdefghijABCDEFGHIJ'
const { text } = createRedactor(zRedactionConfig.parse({}))

describe('log output under the redaction policy', () => {
  it('redacts the message and every string field, nested and in errors, keeping the rest', () => {
    const lines: [string, string, Record<string, unknown> | undefined][] = []
    const logger = redactingLogger(
      {
        info: (m, f) => lines.push(['info', m, f]),
        warn: (m, f) => lines.push(['warn', m, f]),
        error: (m, f) => lines.push(['error', m, f]),
      },
      text,
    )
    logger.warn(`refused ${KEY}`, {
      status: 403,
      reason: `not yours: ${KEY}`,
      nested: { list: [`/home/alice/x ${KEY}`, 7] },
      error: new Error(`upstream said postgres://u:s3cretpw@db/x`),
    })
    logger.info('plain')
    expect(lines).toEqual([
      [
        'warn',
        'refused [REDACTED]',
        {
          status: 403,
          reason: 'not yours: [REDACTED]',
          nested: { list: ['/home/<redacted>/x [REDACTED]', 7] },
          error: 'upstream said postgres://u:[REDACTED]@db/x',
        },
      ],
      ['info', 'plain', undefined],
    ])
  })

  it('hands the error handler a redacted message and context', () => {
    const seen: [string, string | undefined][] = []
    const handler = redactingErrorHandler(
      (e, c) => seen.push([e instanceof Error ? e.message : String(e), c]),
      text,
    )
    handler(new Error(`bad ${KEY}`), `hashing /home/bob/out.png`)
    handler('no context')
    expect(seen).toEqual([
      ['bad [REDACTED]', 'hashing /home/<redacted>/out.png'],
      ['no context', undefined],
    ])
  })
})
