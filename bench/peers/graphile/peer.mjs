// Graphile Worker, one worker process: no-op jobs/s and enqueue→start latency.
//
//   node peer.mjs jobs COUNT
//   node peer.mjs latency RATE SECONDS
//
// The database is BENCH_DATABASE_URL. Prints one JSON object for the harness.
import { performance } from "node:perf_hooks";
import { Logger, makeWorkerUtils, run } from "graphile-worker";

const CONCURRENCY = 10;
const connectionString = process.env.BENCH_DATABASE_URL;
const quiet = new Logger(() => () => {});

async function startWorker(onJob) {
  return run({
    connectionString,
    concurrency: CONCURRENCY,
    noHandleSignals: true,
    pollInterval: 1000,
    logger: quiet,
    taskList: { noop: async (payload) => onJob(payload) },
  });
}

async function jobs(utils, count) {
  for (let start = 0; start < count; start += 1000) {
    const size = Math.min(1000, count - start);
    await utils.addJobs(Array.from({ length: size }, () => ({ identifier: "noop", payload: {} })));
  }
  const started = [];
  let finish;
  const finished = new Promise((resolve) => (finish = resolve));
  const runner = await startWorker(() => {
    started.push(performance.now());
    if (started.length >= count) finish();
  });
  await withTimeout(finished, 120_000);
  await runner.stop();
  const seconds = (started[started.length - 1] - started[0]) / 1000;
  return { jobs_per_s: (count - 1) / seconds };
}

async function latency(utils, rate, seconds) {
  const count = Math.floor(rate * seconds);
  const sent = new Array(count);
  const began = new Array(count);
  let seen = 0;
  let finish;
  const finished = new Promise((resolve) => (finish = resolve));
  const runner = await startWorker((payload) => {
    began[payload.index] = performance.now();
    seen += 1;
    if (seen >= count) finish();
  });
  await sleep(500); // let the worker LISTEN before the first job
  const origin = performance.now();
  for (let index = 0; index < count; index += 1) {
    const pause = origin + (index * 1000) / rate - performance.now();
    if (pause > 0) await sleep(pause);
    sent[index] = performance.now();
    await utils.addJob("noop", { index });
  }
  await withTimeout(finished, (seconds + 30) * 1000);
  await runner.stop();
  return { start_ms: began.map((time, index) => time - sent[index]) };
}

function sleep(milliseconds) {
  return new Promise((resolve) => setTimeout(resolve, milliseconds));
}

function withTimeout(promise, milliseconds) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error("timed out")), milliseconds);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

const [mode, ...rest] = process.argv.slice(2);
const utils = await makeWorkerUtils({ connectionString, logger: quiet });
try {
  await utils.migrate();
  await utils.withPgClient((client) => client.query("DELETE FROM graphile_worker._private_jobs"));
  const result =
    mode === "jobs"
      ? await jobs(utils, Number(rest[0]))
      : await latency(utils, Number(rest[0]), Number(rest[1]));
  process.stdout.write(JSON.stringify(result) + "\n");
} finally {
  await utils.release();
}
