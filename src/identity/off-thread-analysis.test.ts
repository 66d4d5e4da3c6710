import { afterEach, describe, expect, it } from 'vitest'
import { stringifyJson } from '../audit/json.js'
import { analyzePromptBody } from '../capture/prompt-analysis.js'
import { zRedactionConfig } from '../config/security-config.js'
import { createOffThreadPromptAnalyzer, type OffThreadPromptAnalyzer } from './off-thread-analysis.js'
import { createRedactor } from './redaction.js'

const analyzers: OffThreadPromptAnalyzer[] = []
afterEach(async () => {
  while (analyzers.length > 0) await analyzers.pop()!.close()
})

const SECRET = 'sk-proj-OFFTHREADSECRET0123456789abcdef'

function body(textBytes: number): Buffer {
  return Buffer.from(
    JSON.stringify({
      prompt: {
        '1': { class_type: 'CLIPTextEncode', inputs: { text: `${SECRET} ${'a.b_c'.repeat(textBytes / 5)}` } },
      },
      extra_data: { api_key_comfy_org: 'comfy-secret', note: 'ask alice@studio.example' },
    }),
  )
}

describe('issue 9 class 5: prompt redaction off the event loop', () => {
  it('redacts a large body on a worker thread while the event loop keeps running', async () => {
    const config = zRedactionConfig.parse({})
    const analyzer = createOffThreadPromptAnalyzer(config, { minBytes: 1024 })
    analyzers.push(analyzer)
    const big = body(4 << 20)
    let ticked = false
    setImmediate(() => {
      ticked = true
    })
    const result = await analyzer.analyze(big, {})
    // Inline, the analysis would have finished before any other callback could run.
    expect(ticked).toBe(true)
    expect(result).toEqual(analyzePromptBody(big, { redact: createRedactor(config) }))
    const stored = JSON.stringify(result.ok ? [result.prompt, result.extra_data] : result.text)
    for (const s of [SECRET, 'comfy-secret', 'alice@studio.example']) expect(stored).not.toContain(s)
  }, 120_000)

  it('analyses small bodies inline, with the same policy', async () => {
    const config = zRedactionConfig.parse({})
    const analyzer = createOffThreadPromptAnalyzer(config)
    analyzers.push(analyzer)
    const small = body(100)
    expect(await analyzer.analyze(small, {})).toEqual(
      analyzePromptBody(small, { redact: createRedactor(config) }),
    )
  })
})

describe('a body analysed on the worker keeps its number spellings', () => {
  it('writes `cfg: 1.0` back as `1.0` for a real 256 KiB+ body', async () => {
    const config = zRedactionConfig.parse({})
    // The default threshold: this body goes to the worker as in production.
    const analyzer = createOffThreadPromptAnalyzer(config)
    analyzers.push(analyzer)
    const note = 'x'.repeat(300 * 1024)
    const big = Buffer.from(
      `{"prompt":{"3":{"class_type":"KSampler","inputs":{"cfg":1.0,"denoise":1.00,"seed":18446744073709551615}}},` +
        `"extra_data":{"note":"${note}","extra_pnginfo":{"workflow":{"version":0.40}}}}`,
    )
    expect(big.length).toBeGreaterThan(256 * 1024)
    const result = await analyzer.analyze(big, {})
    const inline = analyzePromptBody(big, { redact: createRedactor(config) })
    if (!result.ok || !inline.ok) throw new Error('expected a JSON body')
    expect(stringifyJson(result.prompt!)).toBe(
      '{"3":{"class_type":"KSampler","inputs":{"cfg":1.0,"denoise":1.00,"seed":18446744073709551615}}}',
    )
    expect(stringifyJson(result.workflow!)).toBe('{"version":0.40}')
    expect(result.prompt_sha256).toBe(inline.prompt_sha256)
    expect(stringifyJson(result.extra_data!)).toBe(stringifyJson(inline.extra_data!))
    expect(result.graph).toBe(result.prompt)
  })
})
