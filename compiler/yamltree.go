package compiler

import (
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strconv"
	"unicode/utf8"

	yamlv2 "go.yaml.in/yaml/v2"
)

// errNotJSONTree is yamlTree's answer for a value it does not convert
// itself; decodeDocument then takes the slower path through JSON text.
var errNotJSONTree = errors.New("value needs the JSON round trip")

// yamlTree decodes a YAML document into the generic JSON tree
// decodeDocument returns, without the JSON text in between: it runs the
// same parser (go.yaml.in/yaml/v2) as sigs.k8s.io/yaml.YAMLToJSON and
// converts its result as YAMLToJSON and encoding/json (with UseNumber)
// would: map keys become strings as YAMLToJSON writes them, numbers
// become json.Number holding encoding/json's spelling of them. Errors
// are the parser's, verbatim. errNotJSONTree means a value the slow path
// must handle (a string that is not valid UTF-8, a key of an unusual
// type, a float JSON cannot hold), so that its error or replacement text
// stays exactly what it was.
func yamlTree(doc []byte) (any, error) {
	var v any
	if err := yamlv2.Unmarshal(doc, &v); err != nil {
		return nil, err
	}
	return jsonTree(v)
}

// jsonTree converts one value of go.yaml.in/yaml/v2's generic decoding.
func jsonTree(v any) (any, error) {
	switch x := v.(type) {
	case nil, bool:
		return x, nil
	case string:
		if !utf8.ValidString(x) {
			return nil, errNotJSONTree // encoding/json replaces bad bytes
		}
		return x, nil
	case int:
		return json.Number(strconv.Itoa(x)), nil
	case int64:
		return json.Number(strconv.FormatInt(x, 10)), nil
	case uint64:
		return json.Number(strconv.FormatUint(x, 10)), nil
	case float64:
		b, err := json.Marshal(x) // encoding/json's float spelling; NaN and Inf fail
		if err != nil {
			return nil, errNotJSONTree
		}
		return json.Number(b), nil
	case []any:
		out := make([]any, len(x))
		for i, e := range x {
			c, err := jsonTree(e)
			if err != nil {
				return nil, err
			}
			out[i] = c
		}
		return out, nil
	case map[any]any:
		out := make(map[string]any, len(x))
		for k, e := range x {
			ks, err := jsonKey(k)
			if err != nil {
				return nil, err
			}
			if _, dup := out[ks]; dup {
				return nil, errNotJSONTree // two keys spelled alike: map order decides
			}
			c, err := jsonTree(e)
			if err != nil {
				return nil, err
			}
			out[ks] = c
		}
		return out, nil
	}
	return nil, errNotJSONTree
}

// jsonKey spells a YAML map key as sigs.k8s.io/yaml does.
func jsonKey(k any) (string, error) {
	switch x := k.(type) {
	case string:
		if !utf8.ValidString(x) {
			return "", errNotJSONTree
		}
		return x, nil
	case int:
		return strconv.Itoa(x), nil
	case int64:
		return strconv.FormatInt(x, 10), nil
	case bool:
		return strconv.FormatBool(x), nil
	case float64:
		switch s := strconv.FormatFloat(x, 'g', -1, 32); s {
		case "+Inf":
			return ".inf", nil
		case "-Inf":
			return "-.inf", nil
		case "NaN":
			return ".nan", nil
		default:
			return s, nil
		}
	}
	return "", fmt.Errorf("%w: key of type %s", errNotJSONTree, reflect.TypeOf(k))
}
