package review

import (
	"encoding/json"
	"io"
)

// jsonReport is the JSON form of a Report: the Report plus its verdict.
type jsonReport struct {
	*Report
	// Changed, Failed and ExitCode are what `gitmesh diff` decides.
	Changed  bool `json:"changed"`
	Failed   bool `json:"failed"`
	ExitCode int  `json:"exitCode"`
}

// WriteJSON renders r as indented JSON, with the exit code it implies.
func (r *Report) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(jsonReport{Report: r, Changed: r.Changed(), Failed: r.Failed(), ExitCode: r.ExitCode()})
}
