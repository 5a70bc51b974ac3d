//! A Direktiv function pod on the local engine: the fake sidecar, the runner in its network
//! namespace and with its `/mnt/shared` volume, and optionally services beside the pod on the
//! same network (an S3 API).

use std::time::{Duration, Instant};

use super::{docker_ok, Container, Images, Network, PATIENCE};
use crate::support::{Body, Reply};

/// A container started beside the pod, before the runner, so that the runner's environment can
/// name its address.
struct Service {
    kind: String,
    image: String,
    port: u16,
    /// The runner's environment variable that gets `http://<address>:<port>`.
    url_env: String,
}

/// How to start a [`Pod`].
pub struct PodBuilder<'a> {
    images: &'a Images,
    image: String,
    flags: Vec<String>,
    services: Vec<Service>,
}

impl PodBuilder<'_> {
    /// An extra `docker run` flag for the runner (`--read-only`, `--memory=96m`, ...).
    pub fn flag(mut self, flag: &str) -> Self {
        self.flags.push(flag.to_string());
        self
    }

    /// An environment variable of the runner container (a function's `envs:`).
    pub fn env(mut self, name: &str, value: &str) -> Self {
        self.flags.push(format!("--env={name}={value}"));
        self
    }

    /// A service container on the pod's network; the runner gets its URL in `url_env`.
    pub fn service(mut self, kind: &str, image: &str, port: u16, url_env: &str) -> Self {
        self.services.push(Service {
            kind: kind.to_string(),
            image: image.to_string(),
            port,
            url_env: url_env.to_string(),
        });
        self
    }

    /// Starts the sidecar, the services, then the runner, and waits until the runner's
    /// `/readyz` answers 200.
    pub async fn start(self) -> Pod {
        let network = Network::create();
        let net_flag = format!("--network={}", network.name);
        let sidecar = Container::run("sidecar", &[&net_flag], &self.images.sidecar, &[]);
        let ip = sidecar.ip_on(&network.name);
        let mut flags = self.flags;
        let mut services = Vec::new();
        let mut service_urls = Vec::new();
        for service in &self.services {
            let container = Container::run(&service.kind, &[&net_flag], &service.image, &[]);
            let url = format!("http://{}:{}", container.ip_on(&network.name), service.port);
            flags.push(format!("--env={}={url}", service.url_env));
            services.push(container);
            service_urls.push(url);
        }
        // Both containers of a Direktiv pod mount the shared volume at /mnt/shared.
        let mut runner_flags = vec![
            format!("--network=container:{}", sidecar.name),
            format!("--volumes-from={}", sidecar.name),
        ];
        runner_flags.extend(flags);
        let runner_flags: Vec<&str> = runner_flags.iter().map(String::as_str).collect();
        let runner = Container::run("runner", &runner_flags, &self.image, &[]);
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(300))
            .build()
            .expect("http client");
        let pod = Pod {
            runner,
            services,
            sidecar,
            _network: network,
            ip,
            service_urls,
            client,
        };
        pod.wait_ready().await;
        pod
    }
}

/// The runner and the fake sidecar sharing one network namespace, like a Direktiv pod.
/// Fields drop in order: runner, services, sidecar, network.
pub struct Pod {
    pub runner: Container,
    pub services: Vec<Container>,
    pub sidecar: Container,
    /// Held so that the network outlives the containers on it.
    _network: Network,
    /// The pod's address on the test network: :8080 is the runner, :8890 the sidecar's control.
    pub ip: String,
    /// `http://<address>:<port>` of each service, in the order they were added.
    pub service_urls: Vec<String>,
    client: reqwest::Client,
}

impl Pod {
    /// A pod whose runner container runs `image`.
    pub fn builder<'a>(images: &'a Images, image: &str) -> PodBuilder<'a> {
        PodBuilder {
            images,
            image: image.to_string(),
            flags: Vec::new(),
            services: Vec::new(),
        }
    }

    /// A pod running `image` with extra `docker run` flags for the runner.
    pub async fn start(images: &Images, image: &str, runner_flags: &[&str]) -> Pod {
        let mut builder = Pod::builder(images, image);
        for flag in runner_flags {
            builder = builder.flag(flag);
        }
        builder.start().await
    }

    async fn wait_ready(&self) {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let sidecar_up = self.get(&self.control("/logs?aid=probe")).await == Some(200);
            let runner_up = self.readyz().await == Some(200);
            if sidecar_up && runner_up {
                return;
            }
            assert!(
                self.runner.running() && self.sidecar.running(),
                "a pod container exited during start-up:\nrunner: {}\nsidecar: {}",
                self.runner.logs(),
                self.sidecar.logs()
            );
            assert!(
                Instant::now() < deadline,
                "pod not ready after {PATIENCE:?} (sidecar {sidecar_up}, runner {runner_up})"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Waits until the service at `url` answers HTTP at all (any status).
    pub async fn wait_service(&self, url: &str) {
        let deadline = Instant::now() + PATIENCE;
        while self.get(url).await.is_none() {
            assert!(
                Instant::now() < deadline,
                "{url} did not answer within {PATIENCE:?}:\n{}",
                self.services
                    .iter()
                    .map(Container::logs)
                    .collect::<Vec<_>>()
                    .join("\n")
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// `http://<pod>:8080<path>`, the runner.
    pub fn runner_url(&self, path: &str) -> String {
        format!("http://{}:8080{path}", self.ip)
    }

    fn control(&self, path: &str) -> String {
        format!("http://{}:8890{path}", self.ip)
    }

    async fn get(&self, url: &str) -> Option<u16> {
        let response = self
            .client
            .get(url)
            .timeout(Duration::from_secs(5))
            .send()
            .await
            .ok()?;
        Some(response.status().as_u16())
    }

    /// The HTTP client the pod's requests go through.
    pub fn client(&self) -> &reqwest::Client {
        &self.client
    }

    /// The status of the runner's `/readyz`, `None` when nothing answers.
    pub async fn readyz(&self) -> Option<u16> {
        self.get(&self.runner_url("/readyz")).await
    }

    /// `POST /` to the runner with `Direktiv-ActionID: aid` and optional extra headers.
    pub async fn post(&self, aid: &str, body: impl Into<Body>, headers: &[(&str, &str)]) -> Reply {
        let mut request = self
            .client
            .post(self.runner_url("/"))
            .header("Direktiv-ActionID", aid)
            .header("Content-Type", "application/json")
            .body(body.into().0);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        match request.send().await {
            Ok(response) => Reply::read(response).await,
            Err(e) => Reply::transport_error(e),
        }
    }

    /// Calls the runner as Direktiv's sidecar does: it makes `/mnt/shared/<aid>` with its `out/`
    /// folders, then posts `input` with that directory as `Direktiv-TempDir`.
    pub async fn call(&self, aid: &str, input: impl Into<Body>) -> Reply {
        let dir = self.prepare(aid).await;
        self.post(aid, input, &[("Direktiv-TempDir", dir.as_str())])
            .await
    }

    /// Every line the runner posted to the sidecar's `/log?aid=<aid>` (posts may carry several
    /// newline-joined lines).
    pub async fn log_lines(&self, aid: &str) -> Vec<String> {
        let url = self.control(&format!("/logs?aid={aid}"));
        let response = self
            .client
            .get(url)
            .send()
            .await
            .expect("query the sidecar");
        let bodies: Vec<String> = response.json().await.expect("sidecar log list");
        bodies
            .iter()
            .flat_map(|body| body.lines().map(str::to_string).collect::<Vec<_>>())
            .collect()
    }

    /// Waits until a line for `aid` satisfies `pred`.
    pub async fn wait_log(&self, aid: &str, pred: impl Fn(&str) -> bool) -> bool {
        let deadline = Instant::now() + PATIENCE;
        while Instant::now() < deadline {
            if self.log_lines(aid).await.iter().any(|l| pred(l)) {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        false
    }

    /// Makes the sidecar create `/mnt/shared/<aid>` as Direktiv's does; returns the path.
    pub async fn prepare(&self, aid: &str) -> String {
        let url = self.control(&format!("/prepare?aid={aid}"));
        let response = self.client.post(url).send().await.expect("ask the sidecar");
        let status = response.status();
        let text = response.text().await.unwrap_or_default();
        assert!(
            status.is_success(),
            "sidecar could not prepare {aid}: {text}"
        );
        text
    }

    /// The content of a file in the shared volume, read in the runner's container.
    #[track_caller]
    pub fn read_shared(&self, path: &str) -> String {
        docker_ok(&["exec", &self.runner.name, "cat", path])
    }
}
