import type { AddressInfo } from 'node:net'
import { afterEach, describe, expect, it } from 'vitest'
import { mountedUnderPrefix, type PrefixedUpstream } from '../../test/helpers/prefixed-upstream.js'
import { z } from 'zod'
import { createComfyClient } from './comfy-client.js'
import { zSystemStats } from './schemas.js'

let upstream: PrefixedUpstream | undefined
/** The request targets the stand-in of the current test got. */
const seen = (): string[] => upstream?.seen ?? []

afterEach(async () => {
  await upstream?.close()
  upstream = undefined
})

/** Mounts this test's ComfyUI stand-in under `/comfy/`; returns its base URL. */
async function mounted(handle: Parameters<typeof mountedUnderPrefix>[0]): Promise<string> {
  upstream = await mountedUnderPrefix(handle)
  return upstream.url
}

const STATS = {
  system: { os: 'posix', comfyui_version: '0.8.0', python_version: '3.12', pytorch_version: '2.5' },
  devices: [],
}

describe('createComfyClient', () => {
  it('keeps the path prefix of the base URL', async () => {
    const base = await mounted((path, _req, res) => {
      if (path === '/system_stats') res.end(JSON.stringify(STATS))
      else res.writeHead(404).end()
    })
    const comfy = createComfyClient({ baseUrl: base })
    expect(comfy.baseUrl).toBe(base.replace(/\/$/, ''))
    const stats = await comfy.getJson(zSystemStats, '/system_stats')
    expect(stats.ok).toBe(true)
    expect(stats.ok && stats.value.system.comfyui_version).toBe('0.8.0')
    expect(seen()).toEqual(['/comfy/system_stats'])
  })

  it('returns failures as values: status, bad JSON, schema mismatch, size, refused connection', async () => {
    const base = await mounted((path, _req, res) => {
      if (path === '/missing') res.writeHead(500).end('boom')
      else if (path === '/nan') res.end('{"a": NaN}')
      else if (path === '/broken') res.end('{"a": ')
      else res.end(`{"a": "${'x'.repeat(10)}"}`)
    })
    const comfy = createComfyClient({ baseUrl: base })
    const missing = await comfy.get('/missing')
    expect(missing).toMatchObject({ ok: false, status: 500 })
    // Python writes NaN bare: the lossless parser reads it.
    const zAnyNumber = z.object({ a: z.custom<number>((v) => typeof v === 'number') })
    const nan = await comfy.getJson(zAnyNumber, '/nan')
    expect(nan.ok && Number.isNaN(nan.value.a)).toBe(true)
    expect((await comfy.getJson(zAnyNumber, '/broken')).ok).toBe(false)
    expect((await comfy.getJson(z.object({ a: z.string() }), '/nan')).ok).toBe(false)
    expect(await comfy.get('/big', { limitBytes: 4 })).toMatchObject({ ok: false })
    const port = (upstream!.server.address() as AddressInfo).port
    await upstream!.close()
    upstream = undefined
    const down = await createComfyClient({ baseUrl: `http://127.0.0.1:${port}` }).get('/queue')
    expect(down.ok).toBe(false)
  })

  it('times out as a value', async () => {
    const base = await mounted(() => {
      // never answers
    })
    const r = await createComfyClient({ baseUrl: base, timeoutMillis: 50 }).get('/queue')
    expect(r).toMatchObject({ ok: false })
    upstream!.server.closeAllConnections()
  })

  it('refuses a base URL that is not http(s)', () => {
    expect(() => createComfyClient({ baseUrl: 'ftp://x' })).toThrow(/http\(s\)/)
  })
})
