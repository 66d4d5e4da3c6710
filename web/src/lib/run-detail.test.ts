import { describe, expect, it } from 'vitest'
import { allInputs } from './compare.js'
import { inputLink, outputFiles, promptGraph, sessionError } from './run-detail.js'

describe('Run page logic', () => {
  it.each([
    [['4', 0], { node: '4', output: 0 }],
    [
      { node: '4', output: 2 },
      { node: '4', output: 2 },
    ],
    [['4', '0'], null],
    [[4, 0], null],
    [{ node: '4', output: 1, extra: true }, null],
    ['4', null],
    [null, null],
  ])('reads %j as a link: %j', (value, expected) => {
    expect(inputLink(value)).toEqual(expected)
  })

  it('lists the files of every UI output kind, defaulting the folder type to output', () => {
    expect(
      outputFiles({
        images: [
          { filename: 'a.png', subfolder: 'x', type: 'temp', sha256: 'ab' },
          { filename: 'b.png' },
          'junk',
        ],
        gifs: [{ filename: 'c.gif', subfolder: '', type: 'output' }],
        text: 'not files',
      }),
    ).toEqual([
      { filename: 'a.png', subfolder: 'x', type: 'temp', sha256: 'ab' },
      { filename: 'b.png', subfolder: '', type: 'output', sha256: null },
      { filename: 'c.gif', subfolder: '', type: 'output', sha256: null },
    ])
    expect(outputFiles(null)).toEqual([])
  })

  it('draws the workflow graph as nodes with the nodes they read from, in id order', () => {
    expect(
      promptGraph({
        '10': { class_type: 'SaveImage', inputs: { images: ['8', 0] } },
        '8': { class_type: 'VAEDecode', inputs: { samples: ['3', 0], vae: ['4', 2] } },
        '4': { class_type: 'CheckpointLoaderSimple', inputs: { ckpt_name: 'x' } },
      }),
    ).toEqual([
      { id: '4', type: 'CheckpointLoaderSimple', from: [] },
      { id: '8', type: 'VAEDecode', from: ['3', '4'] },
      { id: '10', type: 'SaveImage', from: ['8'] },
    ])
  })

  it('reads the session error, or none', () => {
    expect(
      sessionError({ node_id: '2', exception_type: 'ValueError', exception_message: ' boom \n' }),
    ).toEqual({
      node: '2',
      type: 'ValueError',
      message: 'boom',
    })
    expect(sessionError(null)).toBeNull()
  })
})

describe('Compare with every input', () => {
  it('marks exactly the inputs that differ or exist on one side only', () => {
    const rows = allInputs(
      {
        '1': { class_type: 'K', inputs: { seed: 1, steps: 20 } },
        '2': { class_type: 'T', inputs: { text: 'a' } },
      },
      {
        '1': { class_type: 'K', inputs: { seed: 2, steps: 20 } },
        '3': { class_type: 'N', inputs: { x: true } },
      },
    )
    expect(rows.filter((r) => r.changed).map((r) => `${r.node}.${r.input}`)).toEqual([
      '1.seed',
      '2.text',
      '3.x',
    ])
    expect(rows.find((r) => r.input === 'steps')).toMatchObject({ a: '20', b: '20', changed: false })
  })
})
