package cwasync

import (
	"encoding/json"
	"reflect"
	"testing"
)

// officeCodesSeeds are bodies of the per-login endpoint: the usual form,
// and forms the fast path must leave to encoding/json.
var officeCodesSeeds = []string{
	`{"officeCodes":[{"firmOfficeCode":"0Q731M"},{"firmOfficeCode":"1A001L"}]}`,
	`{"officeCodes":[]}`,
	` { "officeCodes" : [ { "firmOfficeCode" : "0Q731M" } ] } ` + "\n",
	`{"officeCodes":[{"firmOfficeCode":"0Q731M","x":1}]}`,
	`{"officeCodes":[{"firmOfficeCode":"0Q\u0037"}]}`,
	`{"officeCodes":[{"firmOfficeCode":"é"}]}`,
	`{"officeCodes":null}`,
	`{"officeCodes":[null]}`,
	`{"officeCodes":[],"officeCodes":[{"firmOfficeCode":"A"}]}`,
	`{"officeCodes":[{"firmOfficeCode":"A"},]}`,
	`{"officeCodes":[{"firmOfficeCode":"A"}]} trailing`,
	`{"officeCodes":[{"firmOfficeCode":"A"}]`,
	`{"offices":[]}`,
	`{}`,
	`[]`,
	``,
}

// TestOfficeCodesFastPath: the fast path decodes the usual form, and
// whatever it accepts decodes exactly as encoding/json decodes it.
func TestOfficeCodesFastPath(t *testing.T) {
	var v officeCodesBody
	if !v.decodeFast([]byte(officeCodesSeeds[0])) || len(*v.OfficeCodes) != 2 || (*v.OfficeCodes)[1].FirmOfficeCode != "1A001L" {
		t.Fatalf("usual body not taken by the fast path: %+v", v)
	}
	for _, s := range officeCodesSeeds {
		checkOfficeCodesFastPath(t, []byte(s))
	}
}

func FuzzOfficeCodesFastPath(f *testing.F) {
	for _, s := range officeCodesSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(checkOfficeCodesFastPath)
}

func checkOfficeCodesFastPath(t *testing.T, b []byte) {
	var fast officeCodesBody
	if !fast.decodeFast(b) {
		return
	}
	var std officeCodesBody
	if err := json.Unmarshal(b, &std); err != nil {
		t.Fatalf("fast path accepted %q, which encoding/json refuses: %v", b, err)
	}
	if !reflect.DeepEqual(fast, std) {
		t.Fatalf("%q: fast path %+v, encoding/json %+v", b, fast, std)
	}
}
