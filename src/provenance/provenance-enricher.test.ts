import { afterEach, describe, expect, it } from 'vitest'
import { mountedUnderPrefix, type PrefixedUpstream } from '../../test/helpers/prefixed-upstream.js'
import { createOutputHasher } from './provenance-enricher.js'

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

describe('createOutputHasher', () => {
  it('streams /view from under the prefix of the ComfyUI URL', async () => {
    const body = Buffer.from('not a png, just bytes')
    const base = await mounted((path, _req, res) => {
      if (path.startsWith('/view?')) res.end(body)
      else res.writeHead(404).end()
    })
    const digest = await createOutputHasher({ comfyUrl: base }).hash({
      type: 'output',
      subfolder: 'a b',
      filename: 'x.png',
    })
    expect(digest.bytes).toBe(body.length)
    expect(seen()).toEqual(['/comfy/view?filename=x.png&subfolder=a+b&type=output'])
  })
})
