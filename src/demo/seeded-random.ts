/** The seeded generator the stand-in draws its pictures with; the demo and the test histories use it too. */
export { seededRandom } from '../sim/images.js'
