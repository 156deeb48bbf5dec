// Command kstatus prints the status that sigs.k8s.io/cli-utils' kstatus library computes for a
// Kubernetes object: the verdict Flux's kustomize-controller and helm-controller wait on
// (Current, InProgress, Failed, Terminating, NotFound, Unknown).
//
// It reads one object, or a List as `kubectl get -o json|yaml` prints it, as JSON or YAML on
// stdin and prints one JSON line per object: {"status": "...", "message": "..."}; the items of a
// List also carry kind, namespace and name. It exits 1 when the input cannot be read or kstatus
// returns an error.
//
//	kubectl get zdr web -o yaml | kstatus
package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/cli-utils/pkg/kstatus/status"
	"sigs.k8s.io/yaml"
)

type verdict struct {
	Kind      string `json:"kind,omitempty"`
	Namespace string `json:"namespace,omitempty"`
	Name      string `json:"name,omitempty"`
	Status    string `json:"status"`
	Message   string `json:"message"`
}

func main() {
	if len(os.Args) > 1 {
		fmt.Fprintln(os.Stderr, "usage: kstatus < object.(json|yaml)")
		os.Exit(2)
	}
	if err := run(os.Stdin, os.Stdout); err != nil {
		fmt.Fprintf(os.Stderr, "kstatus: %v\n", err)
		os.Exit(1)
	}
}

func run(in io.Reader, out io.Writer) error {
	raw, err := io.ReadAll(in)
	if err != nil {
		return fmt.Errorf("reading stdin: %w", err)
	}
	// YAML is a superset of JSON: both arrive here as JSON. The unstructured decoder keeps
	// integers as int64, which kstatus needs to compare generation and observedGeneration.
	data, err := yaml.YAMLToJSON(raw)
	if err != nil {
		return fmt.Errorf("not JSON or YAML: %w", err)
	}
	var obj unstructured.Unstructured
	if err := obj.UnmarshalJSON(data); err != nil {
		return fmt.Errorf("not a Kubernetes object: %w", err)
	}
	enc := json.NewEncoder(out)
	if !obj.IsList() {
		v, err := compute(&obj)
		if err != nil {
			return err
		}
		return enc.Encode(v)
	}
	var list unstructured.UnstructuredList
	if err := list.UnmarshalJSON(data); err != nil {
		return fmt.Errorf("not a Kubernetes list: %w", err)
	}
	for i := range list.Items {
		item := &list.Items[i]
		v, err := compute(item)
		if err != nil {
			return err
		}
		v.Kind, v.Namespace, v.Name = item.GetKind(), item.GetNamespace(), item.GetName()
		if err := enc.Encode(v); err != nil {
			return err
		}
	}
	return nil
}

func compute(obj *unstructured.Unstructured) (verdict, error) {
	res, err := status.Compute(obj)
	if err != nil {
		return verdict{}, fmt.Errorf("%s %s: %w", obj.GetKind(), obj.GetName(), err)
	}
	return verdict{Status: res.Status.String(), Message: res.Message}, nil
}
