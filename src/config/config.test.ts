import { mkdtempSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import { loadConfig, parseHostPort, sinkName } from './config.js'

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

describe('loadConfig: sinks and metrics', () => {
  it('has no sinks and closed metrics by default', () => {
    const r = loadConfig({ env: {} })
    expect(r.ok && r.value.sinks).toEqual([])
    expect(r.ok && r.value.metrics).toEqual({ open: false })
  })

  it('fills each sink type with its documented defaults', () => {
    const file = tempFile(
      JSON.stringify({
        sinks: [
          { type: 'jsonl' },
          { type: 'otlp', url: 'http://collector:4318' },
          { type: 'loki', url: 'http://loki:3100', labels: { env: 'prod' }, tenant: 'studio' },
          { type: 'elasticsearch', url: 'http://es:9200', auth: { apiKey: 'k' } },
          { type: 'webhook', url: 'http://hook/x', secret: '0123456789abcdef' },
        ],
      }),
    )
    const r = loadConfig({ file, env: {} })
    if (!r.ok) throw new Error(r.problems.join('; '))
    const [jsonl, otlp, loki, es, webhook] = r.value.sinks
    expect(jsonl).toEqual({
      type: 'jsonl',
      prefix: 'comfy-audit',
      rotation: { daily: true, maxFileBytes: 100 * 2 ** 20, gzip: true },
      batch: {
        maxQueueSize: 2048,
        maxExportBatchSize: 512,
        scheduledDelayMillis: 1000,
        exportTimeoutMillis: 30_000,
      },
      spoolMaxBytes: 256 * 2 ** 20,
    })
    expect(otlp).toMatchObject({ type: 'otlp', url: 'http://collector:4318', spoolMaxBytes: 256 * 2 ** 20 })
    expect(loki).toMatchObject({ labels: { env: 'prod' }, tenant: 'studio' })
    expect(es).toMatchObject({ index: 'comfy-audit', auth: { apiKey: 'k' } })
    expect(webhook).toMatchObject({ secret: '0123456789abcdef' })
    expect(r.value.sinks.map(sinkName)).toEqual(['jsonl', 'otlp', 'loki', 'elasticsearch', 'webhook'])
    expect(Object.isFrozen(r.value.sinks[0]!.batch)).toBe(true)
  })

  it('takes sink secrets from ${ENV} references', () => {
    const file = tempFile(
      JSON.stringify({
        sinks: [
          { type: 'webhook', url: 'http://hook/x', secret: '${HOOK_SECRET}' },
          { type: 'loki', url: 'http://loki:3100', auth: { bearer: '${LOKI_TOKEN}' } },
        ],
        metrics: { token: '${SCRAPE}' },
      }),
    )
    const r = loadConfig({
      file,
      env: { HOOK_SECRET: 'a-long-hmac-secret-value', LOKI_TOKEN: 'tok', SCRAPE: 'scrape-token' },
    })
    if (!r.ok) throw new Error(r.problems.join('; '))
    expect(r.value.sinks[0]).toMatchObject({ secret: 'a-long-hmac-secret-value' })
    expect(r.value.sinks[1]).toMatchObject({ auth: { bearer: 'tok' } })
    expect(r.value.metrics.token).toBe('scrape-token')
  })

  it('takes the metrics token from COMFY_AUDIT_METRICS_TOKEN', () => {
    const r = loadConfig({ env: { COMFY_AUDIT_METRICS_TOKEN: 't0ken' } })
    expect(r.ok && r.value.metrics).toEqual({ token: 't0ken', open: false })
  })

  it('reports every sink problem with its path', () => {
    const file = tempFile(
      JSON.stringify({
        sinks: [
          { type: 'kafka', url: 'http://k' },
          { type: 'otlp' },
          { type: 'webhook', url: 'http://hook', secret: 'short' },
          { type: 'loki', url: 'http://loki', batch: { maxQueueSize: 10, maxExportBatchSize: 20 } },
          { type: 'jsonl', name: 'files' },
          { type: 'jsonl', name: 'files' },
          { type: 'jsonl', name: '../escape' },
          { type: 'jsonl', url: 'http://not-for-jsonl' },
        ],
        metrics: { open: 'yes' },
      }),
    )
    const r = loadConfig({ file, env: {} })
    expect(r.ok).toBe(false)
    if (r.ok) return
    const paths = r.problems.map((p) => p.slice(0, p.indexOf(':')))
    expect(paths).toEqual(
      expect.arrayContaining([
        'sinks.0.type',
        'sinks.1.url',
        'sinks.2.secret',
        'sinks.3.batch.maxExportBatchSize',
        'sinks.6.name',
        'sinks.7',
        'metrics.open',
      ]),
    )
  })

  it('refuses two sinks with one name, because they would share a spool', () => {
    const file = tempFile(JSON.stringify({ sinks: [{ type: 'jsonl' }, { type: 'jsonl', dir: '/b' }] }))
    const r = loadConfig({ file, env: {} })
    expect(r).toEqual({
      ok: false,
      problems: [expect.stringMatching(/^sinks\.1\.name: duplicate sink name "jsonl"/)],
    })
  })
})

describe('parseHostPort', () => {
  it('splits host and port, IPv6 included', () => {
    expect(parseHostPort('127.0.0.1:8190')).toEqual({ host: '127.0.0.1', port: 8190 })
    expect(parseHostPort('[::1]:80')).toEqual({ host: '::1', port: 80 })
  })
})

describe('retention', () => {
  it('takes days as a number or a duration and refuses anything else, naming the path', () => {
    expect(loadConfig({ env: {}, flags: { 'retention.days': 90 } }).ok).toBe(true)
    expect(loadConfig({ env: {}, flags: { 'retention.days': '12w' } }).ok).toBe(true)
    const bad = loadConfig({ env: {}, flags: { 'retention.days': 'soon' } })
    expect(bad.ok).toBe(false)
    if (!bad.ok) expect(bad.problems.join('\n')).toMatch(/^retention\.days: /m)
  })
})

describe('issue 10 item 11: unknown config keys', () => {
  it('names every key the schema does not know, at any depth, instead of dropping it', () => {
    const file = join(mkdtempSync(join(tmpdir(), 'ca-config-')), 'config.json')
    writeFileSync(
      file,
      JSON.stringify({ bogusKey: 1, store: { urll: 'sqlite' }, ledger: { checkpointEvery: 5 } }),
    )
    const r = loadConfig({ file, env: {} })
    expect(r.ok).toBe(false)
    if (r.ok) return
    expect(r.problems).toEqual(
      expect.arrayContaining(['bogusKey: unknown config key', 'store.urll: unknown config key']),
    )
    expect(r.problems.join('\n')).not.toContain('checkpointEvery')
  })
})
