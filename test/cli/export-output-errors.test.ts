/**
 * Issue 10 item 11 (rest): `export` into a closed pipe (`comfy-audit export | head -1`) or into a path it cannot
 * write ends with one line naming the output and a non-zero exit code, never an unhandled 'error' event and its
 * stack trace. The real CLI in a child process, on a real SQLite store big enough to overflow a pipe's buffer.
 */
import { spawn } from 'node:child_process'
import { existsSync } from 'node:fs'
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { createRuntimeStore } from '../../src/store/runtime-store.js'
import { createSqliteDialect } from '../../src/store/sqlite/sqlite-dialect.js'
import { cli } from '../helpers/cli.js'
import { sessionEvents } from '../ledger/ledger-fixture.js'

const ROOT = new URL('../..', import.meta.url).pathname
const SESSIONS = 500

let root: string
let data: string
beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), 'ca-export-out-'))
  data = join(root, 'data')
  const store = createRuntimeStore(createSqliteDialect({ path: join(data, 'audit.sqlite') }), {
    origin: 'comfy-audit',
  })
  await store.init()
  const events = []
  for (let i = 0; i < SESSIONS; i++) events.push(...sessionEvents(`s${i}`, 'alice', i * 10))
  await store.append(events)
  await store.close()
}, 60_000)
afterAll(async () => {
  await rm(root, { recursive: true, force: true })
})

/**
 * Runs `comfy-audit ARGS… | head -1`: reads the child's standard output up to the first newline, then
 * closes the pipe's read end, as `head` does. Resolves with that line, stderr and the exit code.
 */
function headOne(...args: string[]): Promise<{ first: string; stderr: string; code: number | null }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--import', 'tsx', 'src/cli/main.ts', ...args], {
      cwd: ROOT,
      env: { ...process.env, COMFY_AUDIT_CONFIG: '' },
      stdio: ['ignore', 'pipe', 'pipe'],
    })
    let out = ''
    let first: string | null = null
    let stderr = ''
    child.stdout.on('data', (chunk: Buffer) => {
      if (first !== null) return
      out += chunk.toString('utf8')
      const nl = out.indexOf('\n')
      if (nl >= 0) {
        first = out.slice(0, nl)
        child.stdout.destroy()
      }
    })
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString('utf8')))
    child.on('error', reject)
    child.on('close', (code) => resolve({ first: first ?? out, stderr, code }))
  })
}

describe('issue 10 item 11: export into a closed pipe or an unwritable path', () => {
  it.each([
    ['node runs as JSONL', ['export']],
    ['sessions as JSONL', ['export', '--table', 'sessions']],
    ['sessions as CSV', ['export', '--table', 'sessions', '--format', 'csv']],
  ])('%s into `| head -1`: one line naming standard output, non-zero exit, no stack', async (_, args) => {
    const r = await headOne(...args, '--data', data)
    expect(r.first.length).toBeGreaterThan(0)
    expect(r.code).toBe(1)
    const lines = r.stderr.trim().split('\n')
    expect(lines).toHaveLength(1)
    expect(lines[0]).toMatch(
      /^comfy-audit: export: standard output was closed by its reader \(EPIPE\); stopped after \d+ rows, the export is incomplete$/,
    )
  })

  it('sessions --json into `| head -1` ends with one line too', async () => {
    const r = await headOne('sessions', '--json', '--limit', String(SESSIONS), '--data', data)
    expect(r.code).toBe(1)
    expect(r.stderr.trim().split('\n')).toEqual([
      'comfy-audit: standard output was closed by its reader (EPIPE); the output is incomplete',
    ])
  })

  it('into a folder that does not exist: one line naming the path, non-zero exit, nothing created', async () => {
    const out = join(root, 'no-such-dir', 'x.jsonl')
    const r = await cli('export', '--data', data, '-o', out)
    expect(r.code).toBe(1)
    expect(r.stderr.trim().split('\n')).toEqual([
      `comfy-audit: export: cannot write ${out} (ENOENT: no such file or directory)`,
    ])
    expect(existsSync(join(root, 'no-such-dir'))).toBe(false)
  })

  it('under a path that is a file, or onto a directory: one line naming the path', async () => {
    const file = join(root, 'plain-file')
    await writeFile(file, 'x')
    const under = await cli('export', '--data', data, '--table', 'sessions', '-o', join(file, 'x.csv'))
    expect(under.code).toBe(1)
    expect(under.stderr.trim()).toBe(
      `comfy-audit: export: cannot write ${join(file, 'x.csv')} (ENOTDIR: not a directory)`,
    )
    const onto = await cli('export', '--data', data, '-o', root)
    expect(onto.code).toBe(1)
    expect(onto.stderr.trim()).toBe(
      `comfy-audit: export: cannot write ${root} (EISDIR: illegal operation on a directory)`,
    )
    expect(await readFile(file, 'utf8')).toBe('x')
  })

  it('still writes every row to a writable file and says how many', async () => {
    const out = join(root, 'all.jsonl')
    const r = await cli('export', '--data', data, '--table', 'sessions', '-o', out)
    expect(r.code).toBe(0)
    expect(r.stderr.trim()).toBe(`exported ${SESSIONS} sessions rows to ${out}`)
    expect((await readFile(out, 'utf8')).trim().split('\n')).toHaveLength(SESSIONS)
  })
})
