pub mod docker_env;
