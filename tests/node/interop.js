// Calls Health, Embed and Search on a Tessera server with grpc-js, loading the project's .proto
// files at run time, and prints what came back as JSON for tests/test_interop.py to compare.
// Usage: node interop.js HOST:PORT SPACE CORPUS
"use strict";
const path = require("path");
const grpc = require("@grpc/grpc-js");
const protoLoader = require("@grpc/proto-loader");

const [address, space, corpus] = process.argv.slice(2);
const repo = path.resolve(__dirname, "..", "..");
const options = { keepCase: true, longs: Number, enums: String, defaults: true, oneofs: true };
const tessera = grpc.loadPackageDefinition(
  protoLoader.loadSync("proto/tessera/v1/tessera.proto", { ...options, includeDirs: [repo] })
).tessera.v1;
const health = grpc.loadPackageDefinition(
  protoLoader.loadSync(path.join(__dirname, "health.proto"), options)
).grpc.health.v1;

const credentials = grpc.credentials.createInsecure();
const client = new tessera.Tessera(address, credentials);
const healthClient = new health.Health(address, credentials);
const call = (c, method, request) =>
  new Promise((resolve, reject) => c[method](request, { deadline: Date.now() + 60000 }, (err, res) => (err ? reject(err) : resolve(res))));

function floats(vector) {
  const b = vector.packed;
  const out = [];
  for (let i = 0; i < b.length; i += 4) out.push(b.readFloatLE(i));
  return out;
}

async function main() {
  const status = (await call(healthClient, "Check", { service: "" })).status;
  const texts = ["a red bicycle", "tomato soup"];
  const embedded = await call(client, "Embed", {
    space,
    items: texts.map((text) => ({ modality: "MODALITY_TEXT", text })),
  });
  const searched = await call(client, "Search", {
    space,
    parts: [{ content: { modality: "MODALITY_TEXT", text: "a bike" }, weight: 1 }],
    top_k: 3,
    corpora: [corpus],
  });
  let notFound = null;
  try {
    await call(client, "DescribeCorpus", { name: "no-such-corpus" });
  } catch (err) {
    notFound = grpc.status[err.code];
  }
  console.log(JSON.stringify({
    health: status,
    space_id: embedded.space_id,
    vectors: embedded.vectors.map(floats),
    hits: searched.hits.map((h) => ({ id: h.id, corpus: h.corpus, raw_score: h.raw_score, calibrated_score: h.calibrated_score })),
    not_found: notFound,
  }));
}

main().then(() => process.exit(0), (err) => { console.error(err); process.exit(1); });
