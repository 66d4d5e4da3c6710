/** Worker-thread side of the SQLite driver: owns the database and answers calls in order. */
import { parentPort, workerData } from 'node:worker_threads'
import { prepareAppend } from '../append-batch.js'
import { SqliteDriver, type SqliteDialectOptions } from './sqlite-dialect.js'
import {
  receivedEvents,
  type PostedEvent,
  type WorkerCall,
  type WorkerReply,
} from './sqlite-worker-driver.js'

const driver = new SqliteDriver(workerData as SqliteDialectOptions)
let chain: Promise<void> = Promise.resolve()

parentPort!.on('message', (message: WorkerCall) => {
  // One call at a time, in arrival order, like the driver on the main thread.
  chain = chain.then(async () => {
    let reply: WorkerReply
    try {
      const fn: unknown = Reflect.get(driver, message.method)
      if (typeof fn !== 'function' || message.method === 'events' || message.method === 'rawEvents') {
        throw new Error(`SQLite worker: unknown method ${message.method}`)
      }
      // A structured clone would lose the number spellings the payloads keep (see PostedEvent): the events
      // travel as text and the batch is prepared here, where its hashes and projection cost the gateway
      // thread nothing.
      const args =
        message.method === 'append'
          ? [prepareAppend(receivedEvents(message.args[0] as PostedEvent[]))]
          : message.args
      reply = { id: message.id, ok: true, value: (await Reflect.apply(fn, driver, args)) as unknown }
    } catch (error) {
      const e = error instanceof Error ? error : new Error(String(error))
      reply = {
        id: message.id,
        ok: false,
        error: { message: e.message, name: e.name, code: (e as NodeJS.ErrnoException).code },
      }
    }
    parentPort!.postMessage(reply)
  })
})
