// Command render writes the manifests of a Helm chart as `helm template` does, for the
// chart's offline test (tests/tests/helm.rs): no helm binary can be installed from the
// package registries this project builds from, but Helm's template engine is Go's
// text/template with sprig's functions, both packaged by Debian, plus the few functions
// Helm adds (include, tpl, required, toYaml, fromYaml), written here as Helm defines them
// (helm pkg/engine/engine.go and funcs.go).
//
//	render [--release NAME] [--namespace NS] CHART [VALUES.yaml...]
//
// Values are the chart's values.yaml merged with each file given, later ones winning, maps
// merged key by key and a null deleting a key (Helm's coalescing). Files under templates/
// whose names start with "_" only define templates; NOTES.txt is rendered and discarded.
package main

import (
	"bytes"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"text/template"

	"github.com/Masterminds/sprig"
	"gopkg.in/yaml.v2"
)

// normalize turns what yaml.v2 decodes (map[interface{}]interface{}) into the
// map[string]interface{} Helm's values are.
func normalize(v interface{}) interface{} {
	switch t := v.(type) {
	case map[interface{}]interface{}:
		m := make(map[string]interface{}, len(t))
		for k, v := range t {
			m[fmt.Sprint(k)] = normalize(v)
		}
		return m
	case []interface{}:
		for i := range t {
			t[i] = normalize(t[i])
		}
		return t
	}
	return v
}

func readYAML(path string) (map[string]interface{}, error) {
	text, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var v interface{}
	if err := yaml.Unmarshal(text, &v); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if v == nil {
		return map[string]interface{}{}, nil
	}
	m, ok := normalize(v).(map[string]interface{})
	if !ok {
		return nil, fmt.Errorf("%s: not a map", path)
	}
	return m, nil
}

// merge lays over onto base: maps key by key, anything else replaced, null deleting.
func merge(base, over map[string]interface{}) map[string]interface{} {
	for k, v := range over {
		if v == nil {
			delete(base, k)
			continue
		}
		b, bok := base[k].(map[string]interface{})
		o, ook := v.(map[string]interface{})
		if bok && ook {
			base[k] = merge(b, o)
		} else {
			base[k] = v
		}
	}
	return base
}

func toYAML(v interface{}) string {
	out, err := yaml.Marshal(v)
	if err != nil {
		return ""
	}
	return strings.TrimSuffix(string(out), "\n")
}

func fromYAML(s string) map[string]interface{} {
	var v interface{}
	if err := yaml.Unmarshal([]byte(s), &v); err != nil {
		return map[string]interface{}{"Error": err.Error()}
	}
	m, _ := normalize(v).(map[string]interface{})
	return m
}

func main() {
	release := flag.String("release", "agent-guard", "release name")
	namespace := flag.String("namespace", "agent-guard", "release namespace")
	flag.Parse()
	if flag.NArg() < 1 {
		fmt.Fprintln(os.Stderr, "usage: render [--release NAME] [--namespace NS] CHART [VALUES.yaml...]")
		os.Exit(2)
	}
	if err := run(*release, *namespace, flag.Arg(0), flag.Args()[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "render:", err)
		os.Exit(1)
	}
}

func run(release, namespace, chartDir string, valueFiles []string) error {
	chart, err := readYAML(filepath.Join(chartDir, "Chart.yaml"))
	if err != nil {
		return err
	}
	values, err := readYAML(filepath.Join(chartDir, "values.yaml"))
	if err != nil {
		return err
	}
	for _, f := range valueFiles {
		over, err := readYAML(f)
		if err != nil {
			return err
		}
		values = merge(values, over)
	}
	name := fmt.Sprint(chart["name"])
	top := map[string]interface{}{
		"Values": values,
		"Chart": map[string]interface{}{
			"Name": name, "Version": chart["version"], "AppVersion": chart["appVersion"],
			"Description": chart["description"], "Type": chart["type"],
		},
		"Release": map[string]interface{}{
			"Name": release, "Namespace": namespace, "Service": "Helm",
			"IsInstall": true, "IsUpgrade": false, "Revision": 1,
		},
		"Capabilities": map[string]interface{}{
			"KubeVersion": map[string]interface{}{"Version": "v1.30.0", "Major": "1", "Minor": "30"},
		},
	}

	paths, err := filepath.Glob(filepath.Join(chartDir, "templates", "*"))
	if err != nil {
		return err
	}
	sort.Strings(paths)
	root := template.New("chart").Option("missingkey=zero")
	funcs := sprig.TxtFuncMap()
	funcs["toYaml"] = toYAML
	funcs["fromYaml"] = fromYAML
	funcs["required"] = func(msg string, v interface{}) (interface{}, error) {
		if v == nil || v == "" {
			return nil, fmt.Errorf("%s", msg)
		}
		return v, nil
	}
	funcs["include"] = func(name string, data interface{}) (string, error) {
		var buf bytes.Buffer
		err := root.ExecuteTemplate(&buf, name, data)
		return buf.String(), err
	}
	funcs["tpl"] = func(text string, data interface{}) (string, error) {
		t, err := root.Clone()
		if err != nil {
			return "", err
		}
		t, err = t.New("tpl").Parse(text)
		if err != nil {
			return "", err
		}
		var buf bytes.Buffer
		err = t.Execute(&buf, data)
		return buf.String(), err
	}
	root.Funcs(funcs)
	var names []string
	for _, p := range paths {
		text, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		n := name + "/templates/" + filepath.Base(p)
		if _, err := root.New(n).Parse(string(text)); err != nil {
			return err
		}
		names = append(names, n)
	}
	var out bytes.Buffer
	for _, n := range names {
		base := filepath.Base(n)
		if strings.HasPrefix(base, "_") {
			continue
		}
		data := map[string]interface{}{}
		for k, v := range top {
			data[k] = v
		}
		data["Template"] = map[string]interface{}{"Name": n, "BasePath": name + "/templates"}
		var buf bytes.Buffer
		if err := root.ExecuteTemplate(&buf, n, data); err != nil {
			return err
		}
		text := strings.ReplaceAll(buf.String(), "<no value>", "")
		if base == "NOTES.txt" || strings.TrimSpace(text) == "" {
			continue
		}
		fmt.Fprintf(&out, "---\n# Source: %s\n%s\n", n, strings.TrimSpace(text))
	}
	_, err = os.Stdout.Write(out.Bytes())
	return err
}
