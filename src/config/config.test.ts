import { mkdtempSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import { loadConfig, parseHostPort } from './config.js'

function tempFile(content: string): string {
  const dir = mkdtempSync(join(tmpdir(), 'comfy-audit-config-'))
  const file = join(dir, 'config.json')
  writeFileSync(file, content)
  return file
}

describe('loadConfig', () => {
  it('fills every default when nothing is given', () => {
    const r = loadConfig({ env: {} })
    expect(r.ok).toBe(true)
    if (!r.ok) return
    expect(r.value.comfyui.url).toBe('http://127.0.0.1:8188')
    expect(r.value.listen).toBe('127.0.0.1:8190')
    expect(r.value.data).toBe('./data')
    expect(r.value.store.url).toBe('sqlite')
    expect(r.value.origin).toMatch(/^comfy-audit\//)
    expect(Object.isFrozen(r.value.comfyui)).toBe(true)
  })

  it('lets flags override the environment, which overrides the file', () => {
    const file = tempFile(
      JSON.stringify({ listen: '127.0.0.1:1000', data: '/file', comfyui: { url: 'http://file:1' } }),
    )
    const r = loadConfig({
      file,
      env: { COMFY_AUDIT_LISTEN: '127.0.0.1:2000', COMFY_AUDIT_DATA: '/env' },
      flags: { data: '/flag', 'comfyui.url': undefined },
    })
    expect(r.ok).toBe(true)
    if (!r.ok) return
    expect(r.value.listen).toBe('127.0.0.1:2000')
    expect(r.value.data).toBe('/flag')
    expect(r.value.comfyui.url).toBe('http://file:1')
  })

  it('reports every problem at once, each with its path', () => {
    const file = tempFile(
      JSON.stringify({ listen: 'nope', comfyui: { url: 'not a url', timeoutMillis: -1 } }),
    )
    const r = loadConfig({ file, env: {} })
    expect(r.ok).toBe(false)
    if (r.ok) return
    expect(r.problems.some((p) => p.startsWith('listen:'))).toBe(true)
    expect(r.problems.some((p) => p.startsWith('comfyui.url:'))).toBe(true)
    expect(r.problems.some((p) => p.startsWith('comfyui.timeoutMillis:'))).toBe(true)
  })

  it('refuses an unknown major version', () => {
    const r = loadConfig({ file: tempFile(JSON.stringify({ version: 2 })), env: {} })
    expect(r).toEqual({ ok: false, problems: [expect.stringMatching(/^version: .*2/)] })
  })

  it('substitutes ${ENV} references and names the missing ones', () => {
    const file = tempFile(
      JSON.stringify({ store: { url: 'postgres://audit:${PGPASS}@db/audit' }, data: '${NOPE}' }),
    )
    const ok = loadConfig({ file, env: { PGPASS: 's3cret', NOPE: '/d' } })
    expect(ok.ok && ok.value.store.url).toBe('postgres://audit:s3cret@db/audit')
    const bad = loadConfig({ file, env: { PGPASS: 'x' } })
    expect(bad.ok).toBe(false)
    if (!bad.ok) expect(bad.problems).toContain('data: environment variable NOPE is not set')
  })

  it('reports an unreadable or malformed file', () => {
    expect(loadConfig({ file: '/nonexistent/x.json', env: {} })).toEqual({
      ok: false,
      problems: [expect.stringMatching(/cannot read \(ENOENT\)/)],
    })
    expect(loadConfig({ file: tempFile('{bad'), env: {} })).toEqual({
      ok: false,
      problems: [expect.stringMatching(/invalid JSON/)],
    })
  })
})

describe('parseHostPort', () => {
  it('splits host and port, IPv6 included', () => {
    expect(parseHostPort('127.0.0.1:8190')).toEqual({ host: '127.0.0.1', port: 8190 })
    expect(parseHostPort('[::1]:80')).toEqual({ host: '::1', port: 80 })
  })
})
