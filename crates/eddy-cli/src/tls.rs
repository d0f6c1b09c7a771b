//! `eddy tls init`: a certificate authority and the certificates a
//! secured cluster needs, for trying TLS out and for small clusters. A
//! production cluster may use certificates from any CA instead.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};

#[derive(Debug, Subcommand)]
pub enum TlsCommand {
    /// Write a new CA (ca.pem, ca-key.pem), a broker certificate it signs
    /// (broker.pem, broker-key.pem) and, with --client, client
    /// certificates for mutual TLS (NAME.pem, NAME-key.pem) into DIR.
    Init(InitArgs),
}

#[derive(Debug, Args)]
pub struct InitArgs {
    /// Directory to write the files to (created if missing; existing
    /// files are never overwritten).
    dir: PathBuf,
    /// Host names and IP addresses the brokers are reached at (default:
    /// localhost and 127.0.0.1); repeat for several.
    #[arg(long = "host", value_name = "HOST")]
    hosts: Vec<String>,
    /// Also write a client certificate whose subject is NAME; repeat for several.
    #[arg(long = "client", value_name = "NAME")]
    clients: Vec<String>,
}

pub fn run(cmd: TlsCommand) -> anyhow::Result<()> {
    match cmd {
        TlsCommand::Init(args) => init(args),
    }
}

fn init(args: InitArgs) -> anyhow::Result<()> {
    std::fs::create_dir_all(&args.dir)
        .with_context(|| format!("creating {}", args.dir.display()))?;
    let mut names = vec!["ca".to_string(), "broker".to_string()];
    names.extend(args.clients.iter().cloned());
    for name in &names {
        for file in [format!("{name}.pem"), format!("{name}-key.pem")] {
            let path = args.dir.join(&file);
            if path.exists() {
                bail!(
                    "{} exists already: choose another directory",
                    path.display()
                );
            }
        }
    }
    let hosts = if args.hosts.is_empty() {
        vec!["localhost".to_string(), "127.0.0.1".to_string()]
    } else {
        args.hosts.clone()
    };
    let failed = |e: rcgen::Error| anyhow::anyhow!("making a certificate: {e}");
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).map_err(failed)?;
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "Eddy cluster CA");
    ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca_key = KeyPair::generate().map_err(failed)?;
    let ca = CertifiedIssuer::self_signed(ca_params, ca_key).map_err(failed)?;
    write(&args.dir, "ca", &ca.pem(), &ca.key().serialize_pem())?;

    let mut broker = CertificateParams::new(hosts.clone()).map_err(failed)?;
    broker
        .distinguished_name
        .push(DnType::CommonName, "eddy-broker");
    // Brokers are clients of each other too.
    broker.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    let key = KeyPair::generate().map_err(failed)?;
    let cert = broker.signed_by(&key, &ca).map_err(failed)?;
    write(&args.dir, "broker", &cert.pem(), &key.serialize_pem())?;

    for name in &args.clients {
        let mut client = CertificateParams::new(Vec::<String>::new()).map_err(failed)?;
        client
            .distinguished_name
            .push(DnType::CommonName, name.as_str());
        client.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        let key = KeyPair::generate().map_err(failed)?;
        let cert = client.signed_by(&key, &ca).map_err(failed)?;
        write(&args.dir, name, &cert.pem(), &key.serialize_pem())?;
    }
    eprintln!(
        "wrote a CA and a broker certificate for {} to {}; keep ca-key.pem offline",
        hosts.join(", "),
        args.dir.display()
    );
    Ok(())
}

fn write(dir: &Path, name: &str, cert: &str, key: &str) -> anyhow::Result<()> {
    std::fs::write(dir.join(format!("{name}.pem")), cert)?;
    let key_path = dir.join(format!("{name}-key.pem"));
    std::fs::write(&key_path, key)?;
    // Keys are for their owner's eyes only.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&key_path, std::fs::Permissions::from_mode(0o600))?;
    }
    Ok(())
}
