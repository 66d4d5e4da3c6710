/** The one reading of `queue_remaining` shared by the socket hub and metrics. */
import { describe, expect, it } from 'vitest'
import { parseUpstreamFrame, queueRemaining } from './frames.js'

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
