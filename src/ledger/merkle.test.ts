import { readdirSync, readFileSync } from 'node:fs'
import { join, relative } from 'node:path'
import { fileURLToPath } from 'node:url'
import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import {
  EMPTY_ROOT,
  consistencyProof,
  createMerkleAccumulator,
  inclusionProof,
  leafHash,
  nodeHash,
  rootFromLeafHashes,
  verifyConsistency,
  verifyInclusion,
} from './merkle.js'

const VECTORS = fileURLToPath(new URL('../../fixtures/merkle-vectors/', import.meta.url))

function filesUnder(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true })
    .flatMap((e) =>
      e.isDirectory() ? filesUnder(join(dir, e.name)) : e.name.endsWith('.json') ? [join(dir, e.name)] : [],
    )
    .sort()
}

const b64 = (s: string): Buffer => Buffer.from(s, 'base64')
const b64s = (p: string[] | null): Buffer[] | null => (p === null ? null : p.map(b64))

interface InclusionVector {
  leafIdx: number
  treeSize: number
  root: string
  leafHash: string
  proof: string[] | null
  wantErr: boolean
}
interface ConsistencyVector {
  size1: number
  size2: number
  root1: string
  root2: string
  proof: string[] | null
  wantErr: boolean
}

function load<T>(kind: string): [string, T][] {
  const dir = join(VECTORS, kind)
  return filesUnder(dir).map((f) => [relative(dir, f), JSON.parse(readFileSync(f, 'utf8')) as T])
}

const inclusionVectors = load<InclusionVector>('inclusion')
const consistencyVectors = load<ConsistencyVector>('consistency')

/** The leaves of the RFC 6962 / transparency-dev reference tree the vectors were made from. */
const REFERENCE_LEAVES = [
  '',
  '00',
  '10',
  '2021',
  '3031',
  '40414243',
  '5051525354555657',
  '606162636465666768696a6b6c6d6e6f',
].map((hex) => leafHash(Buffer.from(hex, 'hex')))

/** MTH written straight from RFC 9162 §2.1.1, recursively, as an independent oracle. */
function naiveRoot(hashes: readonly Buffer[]): Buffer {
  if (hashes.length === 0) return EMPTY_ROOT
  if (hashes.length === 1) return hashes[0] as Buffer
  let k = 1
  while (k * 2 < hashes.length) k *= 2
  return nodeHash(naiveRoot(hashes.slice(0, k)), naiveRoot(hashes.slice(k)))
}

function leaves(n: number): Buffer[] {
  return Array.from({ length: n }, (_, i) => leafHash(`{"seq":${i}}`))
}

function flipBit(b: Buffer, bit: number): Buffer {
  const out = Buffer.from(b)
  const i = Math.floor(bit / 8) % out.length
  out[i] = (out[i] as number) ^ (1 << (bit % 8))
  return out
}

describe('transparency-dev test vectors', () => {
  it('covers every inclusion and consistency file', () => {
    expect(inclusionVectors.length).toBeGreaterThanOrEqual(80)
    expect(consistencyVectors.length).toBeGreaterThanOrEqual(90)
    expect(inclusionVectors.filter(([, v]) => !v.wantErr).length).toBeGreaterThan(0)
    expect(consistencyVectors.filter(([, v]) => !v.wantErr).length).toBeGreaterThan(0)
  })

  it.each(inclusionVectors)('inclusion/%s', (_name, v) => {
    const r = verifyInclusion(v.leafIdx, v.treeSize, b64(v.leafHash), b64s(v.proof), b64(v.root))
    expect(r.ok).toBe(!v.wantErr)
  })

  it.each(consistencyVectors)('consistency/%s', (_name, v) => {
    const r = verifyConsistency(v.size1, v.size2, b64(v.root1), b64(v.root2), b64s(v.proof))
    expect(r.ok).toBe(!v.wantErr)
  })

  it('reproduces every happy-path root and proof from the reference leaves', () => {
    for (const [name, v] of inclusionVectors.filter(([n, v]) => !v.wantErr && /^\d\//.test(n))) {
      const tree = REFERENCE_LEAVES.slice(0, v.treeSize)
      expect(rootFromLeafHashes(tree).toString('base64'), name).toBe(v.root)
      expect(tree[v.leafIdx]?.toString('base64'), name).toBe(v.leafHash)
      expect(
        inclusionProof(tree, v.leafIdx, v.treeSize).map((h) => h.toString('base64')),
        name,
      ).toEqual(v.proof ?? [])
    }
    for (const [name, v] of consistencyVectors.filter(([, v]) => !v.wantErr && v.root1.length === 44)) {
      expect(rootFromLeafHashes(REFERENCE_LEAVES.slice(0, v.size1)).toString('base64'), name).toBe(v.root1)
      expect(rootFromLeafHashes(REFERENCE_LEAVES.slice(0, v.size2)).toString('base64'), name).toBe(v.root2)
      const proof = consistencyProof(REFERENCE_LEAVES, v.size1, v.size2).map((h) => h.toString('base64'))
      expect(proof, name).toEqual(v.proof ?? [])
    }
  })
})

describe('tree hashing', () => {
  it('prefixes leaves with 0x00 and nodes with 0x01 (domain separation)', () => {
    expect(leafHash('').toString('hex')).toBe(
      '6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d',
    )
    expect(EMPTY_ROOT.toString('hex')).toBe(
      'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855',
    )
    expect(leafHash('é').equals(leafHash(Buffer.from('é', 'utf8')))).toBe(true)
    const [a, b] = leaves(2) as [Buffer, Buffer]
    expect(nodeHash(a, b).equals(nodeHash(b, a))).toBe(false)
  })

  it('computes the same root as the recursive definition for every size up to 70', () => {
    const all = leaves(70)
    for (let n = 0; n <= 70; n++)
      expect(rootFromLeafHashes(all.slice(0, n)).equals(naiveRoot(all.slice(0, n)))).toBe(true)
  })

  it('gives the accumulator root at every size and resumes from its saved state', () => {
    const all = leaves(70)
    const acc = createMerkleAccumulator()
    expect(acc.root().equals(EMPTY_ROOT)).toBe(true)
    for (let n = 1; n <= 70; n++) {
      acc.append(all[n - 1] as Buffer)
      expect(acc.size).toBe(n)
      expect(acc.root().equals(naiveRoot(all.slice(0, n)))).toBe(true)
      const state = acc.state()
      // One hash per set bit of the size: O(log n) memory.
      expect(state.hashes.length).toBe(n.toString(2).replace(/0/g, '').length)
      if (n === 45) {
        const resumed = createMerkleAccumulator(state)
        for (const h of all.slice(45)) resumed.append(h)
        expect(resumed.root().equals(naiveRoot(all))).toBe(true)
      }
    }
  })

  it('refuses a saved state that does not match its size, and hashes of the wrong length', () => {
    const acc = createMerkleAccumulator()
    for (const h of leaves(5)) acc.append(h)
    const { hashes } = acc.state()
    expect(() => createMerkleAccumulator({ size: 7, hashes })).toThrow(/needs 3 hashes/)
    expect(() => acc.append(Buffer.alloc(31))).toThrow(/32-byte/)
  })

  it('hashes 100k leaves in one pass', () => {
    const n = 100_000
    const all = Array.from({ length: n }, (_, i) => {
      const b = Buffer.alloc(32)
      b.writeUInt32BE(i)
      return b
    })
    const start = process.hrtime.bigint()
    const root = rootFromLeafHashes(all)
    const ms = Number(process.hrtime.bigint() - start) / 1e6
    console.log(`rootFromLeafHashes: ${n} leaves in ${ms.toFixed(0)} ms`)
    const acc = createMerkleAccumulator()
    for (const h of all) acc.append(h)
    expect(acc.root().equals(root)).toBe(true)
    const proof = inclusionProof(all, 12_345, n)
    expect(proof.length).toBe(17)
    expect(verifyInclusion(12_345, n, all[12_345] as Buffer, proof, root)).toEqual({ ok: true })
  })
})

describe('proofs', () => {
  const sizes = fc
    .integer({ min: 1, max: 130 })
    .chain((n) => fc.record({ n: fc.constant(n), i: fc.integer({ min: 0, max: n - 1 }), bit: fc.nat() }))

  it('verifies every inclusion proof it generates and rejects it after any bit flip', () => {
    const all = leaves(130)
    fc.assert(
      fc.property(sizes, ({ n, i, bit }) => {
        const tree = all.slice(0, n)
        const root = rootFromLeafHashes(tree)
        const proof = inclusionProof(tree, i, n)
        const leaf = tree[i] as Buffer
        expect(verifyInclusion(i, n, leaf, proof, root)).toEqual({ ok: true })
        expect(verifyInclusion(i, n, flipBit(leaf, bit), proof, root).ok).toBe(false)
        expect(verifyInclusion(i, n, leaf, proof, flipBit(root, bit)).ok).toBe(false)
        if (proof.length > 0) {
          const at = bit % proof.length
          const bad = proof.map((p, k) => (k === at ? flipBit(p, bit) : p))
          expect(verifyInclusion(i, n, leaf, bad, root).ok).toBe(false)
          expect(verifyInclusion(i, n, leaf, proof.slice(1), root).ok).toBe(false)
        }
        expect(verifyInclusion(i, n, leaf, [...proof, root], root).ok).toBe(false)
        if (n > 1) expect(verifyInclusion((i + 1) % n, n, leaf, proof, root).ok).toBe(false)
      }),
      { numRuns: 300 },
    )
  })

  it('verifies every consistency proof it generates and rejects it after any bit flip', () => {
    const all = leaves(130)
    const pairs = fc
      .integer({ min: 1, max: 130 })
      .chain((n) => fc.record({ n: fc.constant(n), m: fc.integer({ min: 1, max: n }), bit: fc.nat() }))
    fc.assert(
      fc.property(pairs, ({ m, n, bit }) => {
        const root1 = rootFromLeafHashes(all.slice(0, m))
        const root2 = rootFromLeafHashes(all.slice(0, n))
        const proof = consistencyProof(all, m, n)
        expect(verifyConsistency(m, n, root1, root2, proof)).toEqual({ ok: true })
        expect(verifyConsistency(m, n, flipBit(root1, bit), root2, proof).ok).toBe(false)
        expect(verifyConsistency(m, n, root1, flipBit(root2, bit), proof).ok).toBe(false)
        if (proof.length > 0) {
          const at = bit % proof.length
          const bad = proof.map((p, k) => (k === at ? flipBit(p, bit) : p))
          expect(verifyConsistency(m, n, root1, root2, bad).ok).toBe(false)
          expect(verifyConsistency(m, n, root1, root2, proof.slice(0, -1)).ok).toBe(false)
        }
        // A tree that diverged (one leaf rewritten) is not an extension of the old one.
        if (m < n) {
          const forked = [...all.slice(0, n)]
          forked[bit % m] = leafHash('tampered')
          const forkedRoot = rootFromLeafHashes(forked)
          expect(verifyConsistency(m, n, root1, forkedRoot, consistencyProof(forked, m, n)).ok).toBe(false)
        }
      }),
      { numRuns: 300 },
    )
  })

  it('refuses to build proofs outside the tree', () => {
    const all = leaves(4)
    expect(() => inclusionProof(all, 4, 4)).toThrow(RangeError)
    expect(() => inclusionProof(all, 0, 5)).toThrow(RangeError)
    expect(() => consistencyProof(all, 0, 4)).toThrow(RangeError)
    expect(() => consistencyProof(all, 3, 2)).toThrow(RangeError)
    expect(consistencyProof(all, 4, 4)).toEqual([])
  })
})
