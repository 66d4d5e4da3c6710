import { describe, expect, it } from 'vitest'
import { Fifo } from './fifo.js'

/** Shifts everything out, oldest first. */
function drain<T>(fifo: Fifo<T>): T[] {
  const out: T[] = []
  for (let item = fifo.shift(); item !== undefined; item = fifo.shift()) out.push(item)
  return out
}

describe('Fifo', () => {
  it('answers undefined when empty, and its length as items come and go', () => {
    const fifo = new Fifo<number>()
    expect(fifo.length).toBe(0)
    expect(fifo.peek()).toBeUndefined()
    expect(fifo.shift()).toBeUndefined()
    fifo.push(1)
    fifo.push(2)
    expect(fifo.length).toBe(2)
    expect(fifo.peek()).toBe(1)
    expect(fifo.length).toBe(2)
    expect(fifo.shift()).toBe(1)
    expect(fifo.length).toBe(1)
    expect(fifo.shift()).toBe(2)
    expect(fifo.length).toBe(0)
    expect(fifo.shift()).toBeUndefined()
    expect(fifo.length).toBe(0)
  })

  it('keeps order across 200k items pushed, then shifted past many compactions', () => {
    const fifo = new Fifo<number>()
    const n = 200_000
    for (let i = 0; i < n; i++) fifo.push(i)
    expect(fifo.length).toBe(n)
    const out = drain(fifo)
    expect(out.length).toBe(n)
    expect(out.every((v, i) => v === i)).toBe(true)
    expect(fifo.length).toBe(0)
  })

  it('keeps order when pushes and shifts interleave (the queue never empties, so it compacts while in use)', () => {
    const fifo = new Fifo<number>()
    const out: number[] = []
    let next = 0
    // Three in, two out, so the live part grows while the consumed prefix passes the compaction threshold.
    for (let round = 0; round < 30_000; round++) {
      for (let k = 0; k < 3; k++) fifo.push(next++)
      for (let k = 0; k < 2; k++) out.push(fifo.shift() as number)
      if (round % 997 === 0) expect(fifo.peek()).toBe(out.length)
    }
    expect(fifo.length).toBe(next - out.length)
    out.push(...drain(fifo))
    expect(out.length).toBe(next)
    expect(out.every((v, i) => v === i)).toBe(true)
  })

  it('puts a retried group back in front, in order, with or without the free slots it came from', () => {
    const fifo = new Fifo<number>()
    for (let i = 0; i < 5000; i++) fifo.push(i)
    // Right after shifting: the group's own slots take it back.
    const group = [fifo.shift(), fifo.shift(), fifo.shift()] as number[]
    fifo.push(5000)
    fifo.unshiftAll(group)
    expect(fifo.length).toBe(5001)
    expect(fifo.peek()).toBe(0)
    // After a compaction (the consumed prefix dropped): the group no longer fits in front and is prepended.
    const taken: number[] = []
    for (let i = 0; i < 3000; i++) taken.push(fifo.shift() as number)
    expect(taken.every((v, i) => v === i)).toBe(true)
    fifo.unshiftAll(taken)
    fifo.unshiftAll([])
    const out = drain(fifo)
    expect(out.length).toBe(5001)
    expect(out.every((v, i) => v === i)).toBe(true)
  })

  it('takes everything at once, oldest first, and is reusable afterwards', () => {
    const fifo = new Fifo<string>()
    for (let i = 0; i < 3000; i++) fifo.push(`e${i}`)
    for (let i = 0; i < 1500; i++) fifo.shift()
    const rest = fifo.takeAll()
    expect(rest.length).toBe(1500)
    expect(rest[0]).toBe('e1500')
    expect(rest.at(-1)).toBe('e2999')
    expect(fifo.length).toBe(0)
    expect(fifo.takeAll()).toEqual([])
    fifo.push('again')
    expect(drain(fifo)).toEqual(['again'])
  })
})
