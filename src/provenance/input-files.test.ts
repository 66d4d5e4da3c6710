import { describe, expect, it } from 'vitest'
import { inputFiles } from './provenance-enricher.js'

describe('inputFiles', () => {
  it('finds the images loaders read from the input folder, with subfolders and annotations', () => {
    expect(
      inputFiles({
        '1': { class_type: 'LoadImage', inputs: { image: 'audit-input.png' } },
        '2': { class_type: 'LoadImageMask', inputs: { image: 'masks/m.png [input]', channel: 'alpha' } },
        '3': { class_type: 'LoadImage', inputs: { image: 'ComfyUI_00001_.png [output]' } },
        '4': { class_type: 'ImageBlur', inputs: { image: ['1', 0] } },
        '5': { class_type: 'LoadImage', inputs: { image: ['9', 0] } },
      }),
    ).toEqual([
      { node_id: '1', filename: 'audit-input.png', subfolder: '', type: 'input' },
      { node_id: '2', filename: 'm.png', subfolder: 'masks', type: 'input' },
    ])
  })

  it('returns nothing for a prompt that is not a graph', () => {
    expect(inputFiles(null)).toEqual([])
    expect(inputFiles('not a graph')).toEqual([])
  })
})
