/**
 * Merkle tree hashing and proofs of RFC 9162 (Certificate Transparency v2), §2.1:
 * https://www.rfc-editor.org/rfc/rfc9162#section-2.1
 *
 * - leaf hash: SHA-256(0x00 || leaf bytes); interior node: SHA-256(0x01 || left || right) (§2.1.1)
 * - the tree over n leaves splits at k, the largest power of two smaller than n, so every left subtree is
 *   perfect; MTH of the empty tree is SHA-256 of the empty string
 * - inclusion proofs (§2.1.3) and consistency proofs (§2.1.4), each listed from the leaf side upwards
 *
 * Tree sizes and indices are JS numbers (exact up to 2^53); bit operations are done with arithmetic because
 * JS bitwise operators truncate to 32 bits.
 */
import { createHash } from 'node:crypto'
import { leafHash } from '../audit/event-leaf.js'

/** Outcome of a proof check. */
type VerifyResult = { ok: true } | { ok: false; reason: string }

/** Length in bytes of every hash in the tree. */
export const HASH_BYTES = 32

const NODE_PREFIX = Buffer.from([0x01])

/** MTH({}): the root of the empty tree, SHA-256 of no bytes. */
export const EMPTY_ROOT: Buffer = createHash('sha256').digest()

/** The RFC 9162 leaf hash of one entry: defined beside the event types, which the store also hashes. */
export { leafHash }

/** The RFC 9162 interior node hash of two child hashes. */
export function nodeHash(left: Buffer, right: Buffer): Buffer {
  return createHash('sha256').update(NODE_PREFIX).update(left).update(right).digest()
}

/** The largest power of two strictly smaller than n (n >= 2). */
function splitPoint(n: number): number {
  let k = 1
  while (k * 2 < n) k *= 2
  return k
}

/** An append-only tree summary of O(log n) hashes that gives the root at any size. */
export interface MerkleAccumulator {
  /** Number of leaves appended so far. */
  readonly size: number
  /** Adds the next leaf hash (32 bytes). */
  append(leafHash: Buffer): void
  /** MTH of all leaves appended so far (EMPTY_ROOT when none). */
  root(): Buffer
  /**
   * The roots of the perfect subtrees that make up the tree, largest (leftmost) first: one per set bit of
   * `size`. Persist it with `size` to resume with {@link createMerkleAccumulator}.
   */
  state(): { size: number; hashes: Buffer[] }
}

function bitCount(n: number): number {
  let c = 0
  for (let x = n; x > 0; x = Math.floor(x / 2)) c += x % 2
  return c
}

/**
 * Creates an incremental RFC 9162 tree: appends are amortised O(1) hashes, `root()` is O(log n), and memory
 * is one hash per set bit of the size (the tree's compact range).
 *
 * @example
 * const acc = createMerkleAccumulator()
 * for (const h of hashes) acc.append(h)
 * acc.root().equals(rootFromLeafHashes(hashes)) // true
 */
export function createMerkleAccumulator(initial?: {
  size: number
  hashes: readonly Buffer[]
}): MerkleAccumulator {
  // stack[i] is the root of a perfect subtree; sizes strictly decrease from bottom to top, following the
  // binary representation of `size` from its most significant bit.
  const stack: Buffer[] = []
  let size = 0
  if (initial) {
    if (!Number.isSafeInteger(initial.size) || initial.size < 0) {
      throw new RangeError(
        `createMerkleAccumulator: size must be a non-negative safe integer, got ${initial.size}`,
      )
    }
    if (initial.hashes.length !== bitCount(initial.size)) {
      throw new RangeError(
        `createMerkleAccumulator: size ${initial.size} needs ${bitCount(initial.size)} hashes, got ${initial.hashes.length}`,
      )
    }
    for (const h of initial.hashes) stack.push(checkHash(h, 'createMerkleAccumulator'))
    size = initial.size
  }
  return {
    get size() {
      return size
    },
    append(h: Buffer): void {
      let node = checkHash(h, 'append')
      // Each trailing one bit of the old size is a perfect subtree of the same height as `node`: merge.
      for (let s = size; s % 2 === 1; s = Math.floor(s / 2)) node = nodeHash(stack.pop() as Buffer, node)
      stack.push(node)
      size++
    },
    root(): Buffer {
      if (stack.length === 0) return EMPTY_ROOT
      let r = stack[stack.length - 1] as Buffer
      for (let i = stack.length - 2; i >= 0; i--) r = nodeHash(stack[i] as Buffer, r)
      return r
    },
    state() {
      return { size, hashes: [...stack] }
    },
  }
}

function checkHash(h: Buffer, where: string): Buffer {
  if (!Buffer.isBuffer(h) || h.length !== HASH_BYTES) {
    throw new TypeError(`${where}: expected a ${HASH_BYTES}-byte hash`)
  }
  return h
}

/** MTH over `hashes[lo, hi)`, in O(hi - lo) time and O(log n) memory. */
function rangeRoot(hashes: readonly Buffer[], lo: number, hi: number): Buffer {
  const acc = createMerkleAccumulator()
  for (let i = lo; i < hi; i++) acc.append(hashes[i] as Buffer)
  return acc.root()
}

/** RFC 9162 MTH (§2.1.1) of a list of leaf hashes; O(n) hashes, O(log n) extra memory. */
export function rootFromLeafHashes(hashes: readonly Buffer[]): Buffer {
  return rangeRoot(hashes, 0, hashes.length)
}

function checkSize(where: string, leafHashes: readonly Buffer[], size: number): void {
  if (!Number.isSafeInteger(size) || size < 0 || size > leafHashes.length) {
    throw new RangeError(`${where}: size ${size} must be an integer in [0, ${leafHashes.length}]`)
  }
}

/**
 * RFC 9162 §2.1.3.1 PATH(index, D[0:size]): the audit path of leaf `index` in the tree of the first `size`
 * leaves, siblings from the leaf upwards. O(size) hashes. Throws for an index outside the tree.
 */
export function inclusionProof(leafHashes: readonly Buffer[], index: number, size: number): Buffer[] {
  checkSize('inclusionProof', leafHashes, size)
  if (!Number.isSafeInteger(index) || index < 0 || index >= size) {
    throw new RangeError(`inclusionProof: index ${index} must be an integer in [0, ${size})`)
  }
  // Walk down from the root; each level contributes the root of the half not holding the leaf. The
  // recursion lists those deepest first, so collect top-down and reverse.
  const topDown: Buffer[] = []
  let lo = 0
  let hi = size
  let m = index
  while (hi - lo > 1) {
    const k = splitPoint(hi - lo)
    if (m < k) {
      topDown.push(rangeRoot(leafHashes, lo + k, hi))
      hi = lo + k
    } else {
      topDown.push(rangeRoot(leafHashes, lo, lo + k))
      lo += k
      m -= k
    }
  }
  return topDown.reverse()
}

/**
 * RFC 9162 §2.1.4.1 PROOF(m, D[0:n]): proves that the tree of the first m leaves is a prefix of the tree of
 * the first n. Empty when m == n. Throws unless 0 < m <= n <= leafHashes.length.
 */
export function consistencyProof(leafHashes: readonly Buffer[], m: number, n: number): Buffer[] {
  checkSize('consistencyProof', leafHashes, n)
  if (!Number.isSafeInteger(m) || m < 1 || m > n) {
    throw new RangeError(`consistencyProof: m ${m} must be an integer in [1, ${n}]`)
  }
  // Iterative SUBPROOF(m, D[lo:hi], b), again collected top-down and reversed.
  const topDown: Buffer[] = []
  let lo = 0
  let hi = n
  let mm = m
  let whole = true // SUBPROOF's b: the m-leaf subtree so far is the old tree's root itself
  while (mm !== hi - lo) {
    const k = splitPoint(hi - lo)
    if (mm <= k) {
      topDown.push(rangeRoot(leafHashes, lo + k, hi))
      hi = lo + k
    } else {
      topDown.push(rangeRoot(leafHashes, lo, lo + k))
      lo += k
      mm -= k
      whole = false
    }
  }
  if (!whole) topDown.push(rangeRoot(leafHashes, lo, hi))
  return topDown.reverse()
}

function isLsbSet(x: number): boolean {
  return x % 2 === 1
}

function half(x: number): number {
  return Math.floor(x / 2)
}

function badHashes(proof: readonly Buffer[]): string | null {
  for (let i = 0; i < proof.length; i++) {
    const p = proof[i] as Buffer
    if (p.length !== HASH_BYTES) return `proof[${i}] is ${p.length} bytes, expected ${HASH_BYTES}`
  }
  return null
}

/**
 * RFC 9162 §2.1.3.2: checks that `leafHash` is leaf `leafIdx` of the tree of `treeSize` leaves with `root`.
 * A null proof counts as empty.
 */
export function verifyInclusion(
  leafIdx: number,
  treeSize: number,
  leafHash: Buffer,
  proof: readonly Buffer[] | null,
  root: Buffer,
): VerifyResult {
  const path = proof ?? []
  if (!Number.isSafeInteger(leafIdx) || !Number.isSafeInteger(treeSize) || leafIdx < 0) {
    return { ok: false, reason: 'leaf index and tree size must be non-negative integers' }
  }
  if (leafIdx >= treeSize)
    return { ok: false, reason: `leaf index ${leafIdx} is not below tree size ${treeSize}` }
  if (leafHash.length !== HASH_BYTES) return { ok: false, reason: `leaf hash is ${leafHash.length} bytes` }
  const bad = badHashes(path)
  if (bad) return { ok: false, reason: bad }
  let fn = leafIdx
  let sn = treeSize - 1
  let r = leafHash
  for (const p of path) {
    if (sn === 0) return { ok: false, reason: 'proof is longer than the path to the root' }
    if (isLsbSet(fn) || fn === sn) {
      r = nodeHash(p, r)
      // The node is a right child or the rightmost node; climb past levels where it has no sibling.
      if (!isLsbSet(fn)) {
        while (!isLsbSet(fn) && fn !== 0) {
          fn = half(fn)
          sn = half(sn)
        }
      }
    } else {
      r = nodeHash(r, p)
    }
    fn = half(fn)
    sn = half(sn)
  }
  if (sn !== 0) return { ok: false, reason: 'proof is shorter than the path to the root' }
  if (!r.equals(root)) return { ok: false, reason: 'computed root does not match the expected root' }
  return { ok: true }
}

/**
 * RFC 9162 §2.1.4.2: checks that the tree of `size1` leaves with `root1` is a prefix of the tree of `size2`
 * leaves with `root2`. Equal sizes need an empty proof and equal roots; size1 = 0 is refused, since every
 * tree extends the empty one and such a proof proves nothing (as in transparency-dev/merkle).
 */
export function verifyConsistency(
  size1: number,
  size2: number,
  root1: Buffer,
  root2: Buffer,
  proof: readonly Buffer[] | null,
): VerifyResult {
  const path = proof ?? []
  if (!Number.isSafeInteger(size1) || !Number.isSafeInteger(size2) || size1 < 0) {
    return { ok: false, reason: 'tree sizes must be non-negative integers' }
  }
  if (size2 < size1) return { ok: false, reason: `size2 ${size2} is smaller than size1 ${size1}` }
  if (size1 === 0) return { ok: false, reason: 'a consistency proof from the empty tree proves nothing' }
  if (size1 === size2) {
    if (path.length > 0) return { ok: false, reason: 'sizes are equal but the proof is not empty' }
    return root1.equals(root2) ? { ok: true } : { ok: false, reason: 'sizes are equal but the roots differ' }
  }
  if (path.length === 0) return { ok: false, reason: 'proof is empty' }
  const bad = badHashes(path)
  if (bad) return { ok: false, reason: bad }

  // Step 1: when size1 is a power of two, the old root is itself a node of the new tree and starts the path.
  const c = isPowerOfTwo(size1) ? [root1, ...path] : path
  let fn = size1 - 1
  let sn = size2 - 1
  while (isLsbSet(fn)) {
    fn = half(fn)
    sn = half(sn)
  }
  let fr = c[0] as Buffer
  let sr = fr
  for (let i = 1; i < c.length; i++) {
    const p = c[i] as Buffer
    if (sn === 0) return { ok: false, reason: 'proof is longer than needed' }
    if (isLsbSet(fn) || fn === sn) {
      fr = nodeHash(p, fr)
      sr = nodeHash(p, sr)
      if (!isLsbSet(fn)) {
        while (!isLsbSet(fn) && fn !== 0) {
          fn = half(fn)
          sn = half(sn)
        }
      }
    } else {
      sr = nodeHash(sr, p)
    }
    fn = half(fn)
    sn = half(sn)
  }
  if (sn !== 0) return { ok: false, reason: 'proof is shorter than needed' }
  if (!fr.equals(root1)) return { ok: false, reason: 'proof does not reproduce root1' }
  if (!sr.equals(root2)) return { ok: false, reason: 'proof does not reproduce root2' }
  return { ok: true }
}

function isPowerOfTwo(n: number): boolean {
  let x = n
  while (x > 1 && x % 2 === 0) x /= 2
  return x === 1
}
