/** The one reading of `queue_remaining` shared by the socket hub and metrics. */
import { describe, expect, it } from 'vitest'
import { parseJson } from '../audit/json.js'
import { parseUpstreamFrame, queueRemaining } from './frames.js'
import { checkWith, isJsonObject, zWsMessage } from './schemas.js'

const read = (raw: string | Buffer, isBinary = false): number | undefined =>
  queueRemaining(parseUpstreamFrame(raw, isBinary))

describe('queueRemaining', () => {
  it('reads the number a status frame carries, with or without sid, and nothing else', () => {
    expect(read('{"type": "status", "data": {"status": {"exec_info": {"queue_remaining": 2}}}}')).toBe(2)
    const connect =
      '{"type": "status", "data": {"status": {"exec_info": {"queue_remaining": 0}}, "sid": "a"}}'
    expect(read(connect)).toBe(0)
    expect(read(Buffer.from(connect), true)).toBeUndefined()
    expect(read('{"type": "progress", "data": {"status": {"exec_info": {"queue_remaining": 1}}}}')).toBe(
      undefined,
    )
    expect(read('{"type": "status", "data": {"status": {"exec_info": {"queue_remaining": "1"}}}}')).toBe(
      undefined,
    )
    expect(read('{"type": "status", "data": {"status": {"exec_info": null}}}')).toBeUndefined()
    expect(read('{"type": "status", "data": [1]}')).toBeUndefined()
    expect(read('{"type": "status", ')).toBeUndefined()
  })
})

describe('progress frames read by one match', () => {
  // What the full reading gives: the tolerant parse, then the schema check.
  const full = (text: string): unknown => {
    const parsed = parseJson(text)
    if (!parsed.ok || !isJsonObject(parsed.value)) return null
    const r = checkWith(zWsMessage, parsed.value)
    return r.ok ? r.value : r.reason
  }

  it('gives exactly the parsed, schema-checked message for the spellings ComfyUI sends', () => {
    for (const text of [
      '{"type": "progress", "data": {"value": 3, "max": 20, "prompt_id": "p-1", "node": "7"}}',
      '{"type": "progress", "data": {"value": 0, "max": 0, "prompt_id": "", "node": null}}',
      '{"type": "progress", "data": {"value": 999999999999999, "max": 1, "prompt_id": "é", "node": "1.2"}}',
    ]) {
      const frame = parseUpstreamFrame(text, false)
      expect(frame.type).toBe('progress')
      const parsed = parseJson(text)
      expect(parsed.ok && frame.json).toEqual(parsed.ok && parsed.value)
      const checked = frame.checked()
      expect(checked.ok && checked.message).toEqual(full(text))
    }
  })

  it('leaves every other spelling to the full parse and check', () => {
    for (const text of [
      '{"type": "progress", "data": {"value": 1.5, "max": 20, "prompt_id": "p", "node": "7"}}',
      '{"type": "progress", "data": {"value": 12345678901234567890, "max": 2, "prompt_id": "p", "node": "7"}}',
      '{"type": "progress", "data": {"value": 1, "max": 2, "prompt_id": "a\\"b", "node": "7"}}',
      '{"type": "progress", "data": {"value": 1, "max": 2, "node": "7", "prompt_id": "p"}}',
      '{"type": "progress", "data": {"value": 1, "max": 2, "prompt_id": "p", "node": 7}}',
      '{"type": "progress", "data": {"value": NaN, "max": 2, "prompt_id": "p", "node": "7"}}',
      '{"type": "progress", "data": {"value": 1, "max": 2, "prompt_id": "p", "node": "7"}} ',
      '{"type": "progress", "data": {"value": 1, "max": 2, "prompt_id": "p", "node": "7"}, "x": 1}',
      '{"type": "progress", "data": {"value": 1, "max": 2, "prompt_id": "p", "node": "7"',
    ]) {
      const frame = parseUpstreamFrame(text, false)
      const checked = frame.checked()
      expect(checked.ok ? checked.message : checked.invalid === null ? null : 'invalid').toEqual(
        typeof full(text) === 'string' ? 'invalid' : full(text),
      )
    }
  })
})
