// Score and compare through a client generated from the service's own /openapi.json:
// `npm run generate` writes src/schema.d.ts (openapi-typescript), openapi-fetch types every
// call with it, and `tsc` (strict) checks the bodies below against the schema. Each body is
// declared as its schema's type, so that a misspelt field is an error too (a literal passed
// straight to client.POST is checked for its fields' types, not for fields it should not have).
//
//   npm ci && FAIRLOSS_URL=http://127.0.0.1:8000 npm run generate && npm run build
//   node dist/main.js http://127.0.0.1:8000      # FAIRLOSS_API_KEY: a key, where one is needed
import createClient from "openapi-fetch";
import type { components, paths } from "./schema.js";

type TypedArray = components["schemas"]["TypedArray"];
type ScoreRequest = components["schemas"]["ScoreRequest"];
type CompareRequest = components["schemas"]["CompareRequest"];
type Column = number[] | boolean[] | TypedArray;

// A typed array's elements: little-endian bytes in standard base64, read into the JavaScript
// array of its dtype (int32 for `predicted`, which every language's arrays hold).
function decode(array: TypedArray): number[] {
  const bytes = Buffer.from(array.data, "base64");
  const buffer = bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength);
  switch (array.dtype) {
    case "float32":
      return Array.from(new Float32Array(buffer));
    case "float64":
      return Array.from(new Float64Array(buffer));
    case "int32":
      return Array.from(new Int32Array(buffer));
    case "bool":
      return Array.from(new Uint8Array(buffer));
    default:
      throw new Error(`a column of ${array.dtype}: not one this example reads`);
  }
}

function values(column: Column | null | undefined): number[] {
  if (column === null || column === undefined) return [];
  if (Array.isArray(column)) return column.map(Number);
  return decode(column);
}

const url = process.argv[2] ?? process.env.FAIRLOSS_URL ?? "http://127.0.0.1:8000";
const key = process.env.FAIRLOSS_API_KEY;
const client = createClient<paths>({
  baseUrl: url,
  headers: key ? { Authorization: `Bearer ${key}` } : {},
});

const logits = [
  [0.34, 0.33, 0.33],
  [0.49, 0.51, 0.0],
];
const labels = [0, 0];

// The README's minimal body: predictions and labels, every option left to its default.
const minimal: ScoreRequest = { logits, labels };
const plain = await client.POST("/score", { body: minimal });
if (plain.error) throw new Error(`${plain.error.status} ${plain.error.title}: ${plain.error.detail}`);

// The same with typed arrays both ways: one binary scores column of class 1 as float32.
const scores = new Float32Array([0.8, -1.5, 2.0]);
const binary: ScoreRequest = {
  logits: { dtype: "float32", shape: [3], data: Buffer.from(scores.buffer).toString("base64") },
  labels: [1, 0, 0],
  response_arrays: "base64",
};
const typed = await client.POST("/score", { body: binary });
if (typed.error) throw new Error(`${typed.error.status} ${typed.error.title}: ${typed.error.detail}`);

// Two candidates of different kinds, compared with the bootstrap's paired tests.
const pair: CompareRequest = {
  labels,
  candidates: [
    { name: "model-a", logits },
    { name: "model-b", probabilities: [[0.6, 0.3, 0.1], [0.2, 0.7, 0.1]] },
  ],
  bootstrap: { replicates: 200, seed: 1 },
  response_arrays: "base64",
};
const compared = await client.POST("/compare", { body: pair });
if (compared.error) {
  throw new Error(`${compared.error.status} ${compared.error.title}: ${compared.error.detail}`);
}

// A refused body is a typed Problem, its errors typed too.
const outOfRange: ScoreRequest = { logits, labels: [0, 3] };
const refused = await client.POST("/score", { body: outOfRange });

console.log(
  JSON.stringify({
    total: plain.data.reduced.total,
    per_sample_total: values(plain.data.per_sample?.total),
    typed_total: values(typed.data.per_sample?.total),
    typed_predicted: values(typed.data.per_sample?.predicted),
    ranking: compared.data.ranking.total,
    differences: (compared.data.differences ?? []).map((d) => [d.a, d.b]),
    refused: refused.error?.errors?.map((e) => e.loc.join(".")),
  }),
);
