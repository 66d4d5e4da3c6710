import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { describe, expect, it } from 'vitest'
import {
  blindCasts,
  crossFolderEdges,
  folderCycles,
  longFiles,
  longFunctions,
  unplacedFolders,
  upwardImports,
} from '../../scripts/architecture-rules.js'
import { findDeadExports } from '../../scripts/dead-exports.js'
import { readSources, type ImportEdge, type SourceFileInfo } from '../../scripts/source-graph.js'

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..')
const sources = readSources(root, ['src', 'test', 'bench', 'web/src', 'scripts'])
const edges = crossFolderEdges(sources)

const edge = (from: string, to: string): ImportEdge => ({ from, to, names: ['x'], typeOnly: false, line: 1 })
const file = (name: string, over: Partial<SourceFileInfo> = {}): SourceFileInfo => ({
  file: name,
  lines: 10,
  text: '',
  imports: [],
  exports: [],
  functions: [],
  ...over,
})

describe('the rules catch what they are for (planted violations)', () => {
  it('an import from a lower layer up to a higher one, and a folder cycle', () => {
    const planted = [edge('src/store/a.ts', 'src/ledger/b.ts'), edge('src/ledger/b.ts', 'src/store/c.ts')]
    expect(upwardImports(planted)).toEqual([
      'src/store/a.ts:1 (store) imports src/ledger/b.ts (ledger, a higher layer)',
    ])
    expect(folderCycles(planted)).toEqual(['ledger -> store -> ledger'])
    expect(upwardImports([edge('src/sim/a.ts', 'src/store/b.ts')])).toHaveLength(1)
    expect(
      upwardImports([edge('src/cli/a.ts', 'src/root/b.ts'), edge('src/root/b.ts', 'src/query/c.ts')]),
    ).toEqual([])
  })

  it('a long file, a long function, a blind cast and a dead export', () => {
    const long = file('src/gateway/long.ts', {
      lines: 501,
      text: 'const x = y as unknown as Z\n',
      functions: [{ file: 'src/gateway/long.ts', name: 'big', line: 3, lines: 151 }],
      exports: [{ name: 'unused', line: 2 }],
    })
    expect(longFiles([long])).toEqual(['src/gateway/long.ts: 501 lines'])
    expect(longFunctions([long])).toEqual(['src/gateway/long.ts:3 big: 151 lines'])
    expect(blindCasts([long])).toEqual(['src/gateway/long.ts:1: const x = y as unknown as Z'])
    const allowed = { ...long, text: '// cast-allowed: a boundary\nconst x = y as unknown as Z\n' }
    expect(blindCasts([allowed])).toEqual([])
    expect(blindCasts([{ ...long, text: '// cast-allowed:\nconst x = y as unknown as Z\n' }])).toHaveLength(1)
    expect(findDeadExports([long])).toEqual([{ file: 'src/gateway/long.ts', line: 2, name: 'unused' }])
    const user = file('test/x.test.ts', {
      imports: [{ ...edge('test/x.test.ts', 'src/gateway/long.ts'), names: ['unused'] }],
    })
    expect(findDeadExports([long, user])).toEqual([])
    // The stand-in and tests are not held to the size rules.
    expect(longFiles([{ ...long, file: 'src/sim/long.ts' }])).toEqual([])
  })
})

describe('the tree of src/ (docs/architecture.md)', () => {
  it('reads the sources', () => {
    expect(sources.filter((s) => s.file.startsWith('src/')).length).toBeGreaterThan(100)
    expect(edges.length).toBeGreaterThan(50)
  })

  it('places every folder of src/ in a layer', () => {
    expect(unplacedFolders(sources)).toEqual([])
  })

  it('imports only downward: no folder imports a higher layer', () => {
    expect(upwardImports(edges)).toEqual([])
  })

  it('has no cycle between folders', () => {
    expect(folderCycles(edges)).toEqual([])
  })

  it('keeps files to 500 lines and functions to 150 (outside the stand-in)', () => {
    expect(longFiles(sources)).toEqual([])
    expect(longFunctions(sources)).toEqual([])
  })

  it('has no `as unknown as` cast in product code', () => {
    expect(blindCasts(sources)).toEqual([])
  })
})
