import { describe, expect, it } from 'vitest'
import { createRetryingTransport, parseRetryAfter, type TransportResponse } from './retrying-transport.js'

function fakeClock(start = 1_000_000): {
  now: () => number
  sleep: (ms: number) => Promise<void>
  slept: number[]
} {
  let t = start
  const slept: number[] = []
  return {
    now: () => t,
    sleep: async (ms) => {
      slept.push(ms)
      t += ms
    },
    slept,
  }
}

const answer = (status: number, headers: Record<string, string> = {}): TransportResponse => ({
  status,
  headers,
  body: '',
})
const signal = new AbortController().signal

describe('createRetryingTransport', () => {
  it('retries 503 and 429 with exponential backoff and jitter, then succeeds', async () => {
    const clock = fakeClock()
    const answers = [answer(503), answer(429), answer(502), answer(200)]
    const t = createRetryingTransport({
      send: async () => answers.shift()!,
      initialBackoffMillis: 100,
      maxBackoffMillis: 300,
      random: () => 0.5,
      ...clock,
    })
    const result = await t.send('x', signal)
    expect(result).toMatchObject({ status: 'success', attempts: 4 })
    // Equal jitter with random 0.5: 3/4 of min(max, initial * 2^(n-1)).
    expect(clock.slept).toEqual([75, 150, 225])
  })

  it('honours Retry-After in seconds and as an HTTP date', async () => {
    const clock = fakeClock(Date.parse('2026-11-26T04:34:00.000Z'))
    const answers = [
      answer(429, { 'retry-after': '7' }),
      answer(503, { 'retry-after': 'Thu, 26 Nov 2026 04:34:17 GMT' }),
      answer(204),
    ]
    const t = createRetryingTransport({ send: async () => answers.shift()!, ...clock })
    expect((await t.send('x', signal)).status).toBe('success')
    expect(clock.slept).toEqual([7000, 10_000])
  })

  it('does not retry other 4xx answers', async () => {
    let calls = 0
    const t = createRetryingTransport({ send: async () => (calls++, answer(400)), ...fakeClock() })
    expect(await t.send('x', signal)).toMatchObject({ status: 'failure', attempts: 1 })
    expect(calls).toBe(1)
  })

  it('retries network errors', async () => {
    let calls = 0
    const t = createRetryingTransport({
      send: async () => {
        if (calls++ === 0) throw new Error('ECONNREFUSED')
        return answer(200)
      },
      ...fakeClock(),
    })
    expect(await t.send('x', signal)).toMatchObject({ status: 'success', attempts: 2 })
  })

  it('gives the batch back as retryable when the deadline would pass', async () => {
    const clock = fakeClock()
    const t = createRetryingTransport({
      send: async () => answer(503),
      maxAttempts: 100,
      initialBackoffMillis: 1000,
      maxBackoffMillis: 1000,
      deadlineMillis: 3500,
      random: () => 0.999,
      ...clock,
    })
    const result = await t.send('x', signal)
    expect(result.status).toBe('retryable')
    expect(clock.slept.reduce((a, b) => a + b, 0)).toBeLessThanOrEqual(3500)
    expect(result.status === 'retryable' && result.retryInMillis).toBeGreaterThan(0)
  })

  it('stops after maxAttempts', async () => {
    let calls = 0
    const t = createRetryingTransport({
      send: async () => (calls++, answer(500)),
      maxAttempts: 3,
      ...fakeClock(),
    })
    expect(await t.send('x', signal)).toMatchObject({ status: 'retryable', attempts: 3 })
    expect(calls).toBe(3)
  })

  it('parses Retry-After forms', () => {
    expect(parseRetryAfter('120', 0)).toBe(120_000)
    expect(parseRetryAfter('soon', 0)).toBeUndefined()
    expect(parseRetryAfter(undefined, 0)).toBeUndefined()
  })
})
