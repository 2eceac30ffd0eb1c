package main

import (
	"errors"
	"os"

	"github.com/spf13/pflag"
	"k8s.io/client-go/rest"

	"github.com/gitmesh/gitmesh/inject"
	"github.com/gitmesh/gitmesh/internal/controller"
)

// injectorFlags are `gitmesh controller`'s --injector-* flags: the sidecar
// injector webhook (docs/kubernetes.md, "Sidecar injection").
type injectorFlags struct {
	addr, configFile  string
	namespace, secret string
	webhook           string
	hosts             []string
	certManager       bool
}

func addInjectorFlags(f *pflag.FlagSet) *injectorFlags {
	var fl injectorFlags
	f.StringVar(&fl.addr, "injector-addr", "", "HTTPS listen address of the sidecar injector webhook (POST /inject); empty: no injector")
	f.StringVar(&fl.configFile, "injector-config", "", "file of what the injector adds to a pod (image, xdsAddress, captureMode, ...; the chart's ConfigMap)")
	f.StringVar(&fl.namespace, "injector-namespace", os.Getenv("POD_NAMESPACE"), "namespace of the injector's certificate Secret (default $POD_NAMESPACE)")
	f.StringVar(&fl.secret, "injector-secret", "gitmesh-injector-tls", "Secret holding the injector's serving certificate, shared by replicas")
	f.StringVar(&fl.webhook, "injector-webhook", "gitmesh-sidecar-injector", "MutatingWebhookConfiguration whose caBundle the controller keeps")
	f.StringSliceVar(&fl.hosts, "injector-hosts", nil, "DNS names and IPs of the serving certificate (the injector Service's <name>.<namespace>.svc)")
	f.BoolVar(&fl.certManager, "injector-cert-manager", false, "the Secret is issued by cert-manager: only read it, and leave the caBundle to its cainjector")
	return &fl
}

// config returns the injector's configuration, nil when --injector-addr
// is not set. kube is the Kubernetes mode's API server (nil: not in
// Kubernetes mode), where the certificate Secret and the webhook
// configuration live.
func (fl *injectorFlags) config(kube *rest.Config) (*controller.InjectorConfig, error) {
	if fl.addr == "" {
		return nil, nil
	}
	if kube == nil {
		return nil, errors.New("--injector-addr needs Kubernetes mode (--kubernetes, or --kubeconfig)")
	}
	if fl.configFile == "" {
		return nil, errors.New("--injector-addr needs --injector-config")
	}
	if fl.namespace == "" {
		return nil, errors.New("--injector-addr needs --injector-namespace (or $POD_NAMESPACE)")
	}
	if !fl.certManager && len(fl.hosts) == 0 {
		return nil, errors.New("--injector-addr needs --injector-hosts, the names the webhook is called by")
	}
	tmpl, err := inject.LoadConfig(fl.configFile)
	if err != nil {
		return nil, err
	}
	cfg := &controller.InjectorConfig{
		Addr: fl.addr, Template: tmpl, Kube: kube,
		Certs: inject.CertConfig{Namespace: fl.namespace, SecretName: fl.secret, Hosts: fl.hosts, Generate: !fl.certManager},
	}
	if !fl.certManager {
		cfg.Certs.WebhookName = fl.webhook
	}
	return cfg, nil
}
