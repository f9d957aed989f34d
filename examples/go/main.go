// Score and compare through a client that oapi-codegen generates from the service's
// /openapi-3.0.json (the same API as /openapi.json, in OpenAPI 3.0's words, which oapi-codegen
// before 2.7 reads): the bodies are the generated structs, the answers decoded into them.
//
//	mkdir -p fairloss && oapi-codegen -config oapi-codegen.yaml "$FAIRLOSS_URL/openapi-3.0.json"
//	go mod tidy && go run . "$FAIRLOSS_URL"   # FAIRLOSS_API_KEY: a key, where one is needed
package main

import (
	"context"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"os"
	"strings"

	"example.com/fairloss-go/fairloss"
)

// decode reads a typed array's elements: little-endian bytes in standard base64.
func decode(array fairloss.TypedArray) []float64 {
	raw, err := base64.StdEncoding.DecodeString(array.Data)
	check(err)
	var out []float64
	switch array.Dtype {
	case "float32":
		for k := 0; k+4 <= len(raw); k += 4 {
			out = append(out, float64(math.Float32frombits(binary.LittleEndian.Uint32(raw[k:]))))
		}
	case "float64":
		for k := 0; k+8 <= len(raw); k += 8 {
			out = append(out, math.Float64frombits(binary.LittleEndian.Uint64(raw[k:])))
		}
	case "int32":
		for k := 0; k+4 <= len(raw); k += 4 {
			out = append(out, float64(int32(binary.LittleEndian.Uint32(raw[k:]))))
		}
	default:
		panic("a column of " + string(array.Dtype) + ": not one this example reads")
	}
	return out
}

func check(err error) {
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}

func labels(values ...int) fairloss.ScoreRequest_Labels {
	var union fairloss.ScoreRequest_Labels
	check(union.FromScoreRequestLabels0(values))
	return union
}

func main() {
	url := os.Getenv("FAIRLOSS_URL")
	if len(os.Args) > 1 {
		url = os.Args[1]
	}
	if url == "" {
		url = "http://127.0.0.1:8000"
	}
	key := os.Getenv("FAIRLOSS_API_KEY")
	withKey := func(_ context.Context, request *http.Request) error {
		if key != "" {
			request.Header.Set("Authorization", "Bearer "+key)
		}
		return nil
	}
	client, err := fairloss.NewClientWithResponses(url, fairloss.WithRequestEditorFn(withKey))
	check(err)
	ctx := context.Background()
	rows := [][]float64{{0.34, 0.33, 0.33}, {0.49, 0.51, 0.0}}

	// The README's minimal body: predictions and labels, every option left to its default.
	var logits fairloss.ScoreRequest_Logits
	check(logits.FromScoreRequestLogits0(rows))
	plain, err := client.ScoreWithResponse(ctx, fairloss.ScoreRequest{Logits: &logits, Labels: labels(0, 0)})
	check(err)
	if plain.JSON200 == nil {
		check(fmt.Errorf("%s: %s", plain.Status(), plain.Body))
	}
	perSample, err := plain.JSON200.PerSample.Total.AsPerSampleTotal0()
	check(err)

	// Typed arrays both ways: one binary scores column of class 1 as float32.
	var scores [12]byte
	for k, s := range []float32{0.8, -1.5, 2.0} {
		binary.LittleEndian.PutUint32(scores[4*k:], math.Float32bits(s))
	}
	var scored fairloss.ScoreRequest_Logits
	check(scored.FromTypedArray(fairloss.TypedArray{
		Dtype: "float32", Shape: []int{3}, Data: base64.StdEncoding.EncodeToString(scores[:]),
	}))
	arrays := fairloss.ScoreRequestResponseArrays("base64")
	typed, err := client.ScoreWithResponse(ctx, fairloss.ScoreRequest{
		Logits: &scored, Labels: labels(1, 0, 0), ResponseArrays: &arrays,
	})
	check(err)
	if typed.JSON200 == nil {
		check(fmt.Errorf("%s: %s", typed.Status(), typed.Body))
	}
	typedTotal, err := typed.JSON200.PerSample.Total.AsTypedArray()
	check(err)
	typedPredicted, err := typed.JSON200.PerSample.Predicted.AsTypedArray()
	check(err)

	// Two candidates of different kinds, compared with the bootstrap's paired tests.
	var a fairloss.Candidate_Logits
	check(a.FromCandidateLogits0(rows))
	var b fairloss.Candidate_Probabilities
	check(b.FromCandidateProbabilities0([][]float64{{0.6, 0.3, 0.1}, {0.2, 0.7, 0.1}}))
	var pairLabels fairloss.CompareRequest_Labels
	check(pairLabels.FromCompareRequestLabels0([]int{0, 0}))
	replicates, seed := 200, uint64(1)
	compared, err := client.CompareWithResponse(ctx, fairloss.CompareRequest{
		Labels: pairLabels,
		Candidates: []fairloss.Candidate{
			{Name: "model-a", Logits: &a},
			{Name: "model-b", Probabilities: &b},
		},
		Bootstrap: &fairloss.BootstrapRequest{Replicates: &replicates, Seed: &seed},
	})
	check(err)
	if compared.JSON200 == nil {
		check(fmt.Errorf("%s: %s", compared.Status(), compared.Body))
	}
	var differences [][2]string
	for _, d := range *compared.JSON200.Differences {
		differences = append(differences, [2]string{d.A, d.B})
	}

	// The Open Inference Protocol's route, typed too: the same rows as JSON tensors.
	flat := []interface{}{0.34, 0.33, 0.33, 0.49, 0.51, 0.0}
	zeros := []interface{}{0, 0}
	inferred, err := client.ModelInferWithResponse(ctx, "fairloss", fairloss.InferenceRequest{
		Inputs: []fairloss.InferInputTensor{
			{Name: "logits", Datatype: "FP64", Shape: []int{2, 3}, Data: &flat},
			{Name: "labels", Datatype: "INT64", Shape: []int{2}, Data: &zeros},
		},
	})
	check(err)
	if inferred.JSON200 == nil {
		check(fmt.Errorf("%s: %s", inferred.Status(), inferred.Body))
	}
	var oipTotal []*float64
	for _, output := range inferred.JSON200.Outputs {
		if output.Name == "total" {
			oipTotal = *output.Data
		}
	}

	// A refused body is a typed Problem, its errors typed too.
	refused, err := client.ScoreWithResponse(ctx, fairloss.ScoreRequest{Logits: &logits, Labels: labels(0, 3)})
	check(err)
	if refused.JSON422 == nil || refused.JSON422.Errors == nil {
		check(fmt.Errorf("expected a 422 Problem, got %s: %s", refused.Status(), refused.Body))
	}
	var where []string
	for _, fault := range *refused.JSON422.Errors {
		var parts []string
		for _, part := range fault.Loc {
			raw, err := json.Marshal(part)
			check(err)
			parts = append(parts, strings.Trim(string(raw), `"`))
		}
		where = append(where, strings.Join(parts, "."))
	}

	said, err := json.Marshal(map[string]any{
		"total":            plain.JSON200.Reduced.Total,
		"per_sample_total": perSample,
		"typed_total":      decode(typedTotal),
		"typed_predicted":  decode(typedPredicted),
		"ranking":          compared.JSON200.Ranking["total"],
		"differences":      differences,
		"refused":          where,
		"oip_total":        oipTotal,
	})
	check(err)
	fmt.Println(string(said))
}
