//! `jobcarbon crd`: print the SoftwareProduct CRD as YAML (`kubectl apply -f -` ready). The same
//! text is committed as `deploy/crds/softwareproducts.jobcarbon.io.yaml`.

use std::io::Write;
use std::process::ExitCode;

pub fn run() -> ExitCode {
    let yaml = match jobcarbon_kube::crd_yaml() {
        Ok(yaml) => yaml,
        Err(error) => {
            eprintln!("jobcarbon crd: cannot render the CRD: {error}");
            return ExitCode::FAILURE;
        }
    };
    let mut stdout = std::io::stdout().lock();
    match stdout
        .write_all(yaml.as_bytes())
        .and_then(|()| stdout.flush())
    {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("jobcarbon crd: cannot write to stdout: {error}");
            ExitCode::FAILURE
        }
    }
}
