# -*- coding: utf-8 -*-
# Copyright: djangoops.maintenance contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The AWX / AAP configuration as code (awx/controller_configuration.yml) against the rules the
controller and infra.aap_configuration apply to it - without a controller.

What is checked, and where each rule comes from:

- The keys and types of every ``controller_templates``, ``controller_schedules``, ``controller_projects``
  and ``controller_execution_environments`` item: the data structure documented by infra.aap_configuration
  (https://github.com/redhat-cop/infra.aap_configuration, roles/controller_job_templates/meta/argument_specs.yml
  and the README of each controller_* role), as JSON schemas with no unknown keys.
- Every survey spec: the checks AWX runs when a survey is saved (awx/api/views/__init__.py,
  ``JobTemplateSurveySpec._validate_spec_data``: name/description/spec present, at least one question,
  type/question_name/variable strings and required a boolean, variables unique, the type one of AWX's seven,
  the default of that type, min/max integers, choices for multiplechoice/multiselect, a single default for
  multiplechoice taken from the choices, no ``$encrypted$`` outside passwords); and the checks AWX runs when a
  job is launched (awx/main/models/mixins.py, ``SurveyJobTemplateMixin._survey_element_validation`` and
  ``_accept_or_ignore_variables``), applied to every default and to every schedule's extra_data.
- References inside the data (template -> project, execution environment; schedule -> template), the
  playbooks of awx/project/ (they exist, import the collection's playbooks, pass --syntax-check), and that
  every survey variable is one the launched playbook or its roles actually read.

Not checked: anything only a live controller knows (organizations, inventories and credentials by name,
RBAC, whether the image can be pulled)."""

from __future__ import annotations

import copy
import os
import re
import subprocess
import sys

import jsonschema
import pytest
import yaml

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
AWX = os.path.join(REPO, 'awx')
BIN = os.path.dirname(sys.executable)

STR, INT, BOOL = {'type': 'string'}, {'type': 'integer'}, {'type': 'boolean'}
STR_LIST = {'type': 'array', 'items': STR}


def _object(required, properties):
    return {'type': 'object', 'required': required, 'additionalProperties': False, 'properties': properties}


# infra.aap_configuration roles/controller_job_templates/meta/argument_specs.yml (options of each item).
TEMPLATE_SCHEMA = _object(['name'], dict(
    name=STR, new_name=STR, copy_from=STR, description=STR, organization=STR, execution_environment=STR,
    job_type={'enum': ['run', 'check']}, inventory=STR, project=STR, playbook=STR, credentials=STR_LIST,
    forks=INT, limit=STR, verbosity={'enum': [0, 1, 2, 3, 4, 5]}, extra_vars={'type': 'object'}, job_tags=STR,
    force_handlers=BOOL, skip_tags=STR, start_at_task=STR, diff_mode=BOOL, use_fact_cache=BOOL,
    host_config_key=STR, ask_scm_branch_on_launch=BOOL, ask_diff_mode_on_launch=BOOL,
    ask_variables_on_launch=BOOL, ask_limit_on_launch=BOOL, ask_tags_on_launch=BOOL, ask_skip_tags_on_launch=BOOL,
    ask_job_type_on_launch=BOOL, ask_verbosity_on_launch=BOOL, ask_inventory_on_launch=BOOL,
    ask_credential_on_launch=BOOL, ask_execution_environment_on_launch=BOOL, ask_forks_on_launch=BOOL,
    ask_instance_groups_on_launch=BOOL, ask_job_slice_count_on_launch=BOOL, ask_labels_on_launch=BOOL,
    ask_timeout_on_launch=BOOL, prevent_instance_group_fallback=BOOL, survey_enabled=BOOL,
    survey_spec={'type': 'object'}, survey={'type': 'object'}, become_enabled=BOOL, allow_simultaneous=BOOL,
    timeout=INT, instance_groups=STR_LIST, job_slice_count=INT, webhook_service={'enum': ['github', 'gitlab']},
    webhook_credential=STR, scm_branch=STR, labels=STR_LIST, custom_virtualenv=STR,
    notification_templates_started=STR_LIST, notification_templates_success=STR_LIST,
    notification_templates_error=STR_LIST, state={'enum': ['present', 'absent', 'exists']}))

# infra.aap_configuration roles/controller_schedules README (data structure).
SCHEDULE_SCHEMA = _object(['name', 'unified_job_template', 'rrule'], dict(
    name=STR, new_name=STR, description=STR, rrule=STR, extra_data={'type': 'object'}, inventory=STR,
    credentials=STR_LIST, execution_environment=STR, forks=INT, instance_groups=STR_LIST, job_slice_count=INT,
    labels=STR_LIST, timeout=INT, scm_branch=STR, job_type={'enum': ['run', 'check']}, job_tags=STR, skip_tags=STR,
    limit=STR, diff_mode=BOOL, verbosity=INT, unified_job_template=STR, organization=STR, enabled=BOOL,
    state={'enum': ['present', 'absent']}))

# infra.aap_configuration roles/controller_projects README.
PROJECT_SCHEMA = _object(['name', 'organization'], dict(
    name=STR, new_name=STR, copy_from=STR, description=STR, organization=STR,
    scm_type={'enum': ['manual', 'git', 'svn', 'insights', 'archive']}, scm_url=STR, default_environment=STR,
    local_path=STR, scm_branch=STR, scm_refspec=STR, credential=STR, signature_validation_credential=STR,
    scm_clean=BOOL, scm_delete_on_update=BOOL, scm_track_submodules=BOOL, scm_update_on_launch=BOOL,
    scm_update_cache_timeout=INT, allow_override=BOOL, timeout=INT, custom_virtualenv=STR,
    notification_templates_started=STR_LIST, notification_templates_success=STR_LIST,
    notification_templates_error=STR_LIST, state={'enum': ['present', 'absent']}, wait=BOOL, update_project=BOOL))

# infra.aap_configuration roles/controller_execution_environments README.
EE_SCHEMA = _object(['name', 'image'], dict(
    name=STR, new_name=STR, description=STR, image=STR, organization=STR, credential=STR,
    pull={'enum': ['always', 'missing', 'never']}, state={'enum': ['present', 'absent']}))

# The shape AWX accepts for a survey (the rest of its rules are in survey_spec_errors).
SURVEY_SCHEMA = {
    'type': 'object', 'required': ['name', 'description', 'spec'],
    'properties': {
        'name': STR, 'description': STR,
        'spec': {'type': 'array', 'minItems': 1, 'items': {
            'type': 'object', 'required': ['type', 'question_name', 'variable', 'required'],
            'properties': {
                'type': {'enum': ['text', 'textarea', 'password', 'multiplechoice', 'multiselect', 'integer',
                                  'float']},
                'question_name': STR, 'question_description': STR, 'variable': STR, 'required': BOOL,
                'min': {'type': ['integer', 'null']}, 'max': {'type': ['integer', 'null']},
                'choices': {'type': ['array', 'string']}}}}}}

# awx JobTemplateSurveySpec.ALLOWED_TYPES
ALLOWED_TYPES = {'text': str, 'textarea': str, 'password': str, 'multiplechoice': str, 'multiselect': str,
                 'integer': int, 'float': float}


def _choices(item):
    choices = item.get('choices', [])
    if isinstance(choices, str):
        choices = [c for c in choices.splitlines() if c.strip()]
    return choices


def survey_spec_errors(spec):
    """AWX's JobTemplateSurveySpec._validate_spec_data, rule by rule; returns the problems."""
    errors = [e.message for e in jsonschema.Draft7Validator(SURVEY_SCHEMA).iter_errors(spec)]
    if errors:
        return errors
    seen = set()
    for idx, item in enumerate(spec['spec']):
        if item['variable'] in seen:
            errors.append("'variable' %r duplicated in survey question %d" % (item['variable'], idx))
        seen.add(item['variable'])
        qtype = item['type']
        default = item.get('default')
        if 'default' in item and default != '':
            wanted = ALLOWED_TYPES[qtype]
            if not isinstance(default, wanted) or (wanted is int and isinstance(default, bool)):
                errors.append('default %r of question %d expected to be %s' % (default, idx, wanted.__name__))
        if qtype in ('multiplechoice', 'multiselect'):
            if 'choices' not in item:
                errors.append('question %d of type %s must specify choices' % (idx, qtype))
            elif 'default' in item and default != '':
                defaults = default.splitlines() if isinstance(default, str) else default
                if qtype == 'multiplechoice' and len(defaults) > 1:
                    errors.append('question %d: multiple choice (single select) can only have one default' % idx)
                if any(d not in _choices(item) for d in defaults):
                    errors.append('question %d: default choice must be answered from the choices listed' % idx)
        if isinstance(default, str) and default.startswith('$encrypted$'):
            errors.append('question %d: $encrypted$ is reserved for password question defaults' % idx)
    return errors


def answer_errors(item, answers):
    """AWX's SurveyJobTemplateMixin._survey_element_validation for one question and a launch's variables."""
    var, qtype = item['variable'], item['type']
    if var not in answers:
        return ["'%s' value missing" % var] if item['required'] else []
    value = answers[var]
    low, high = item.get('min'), item.get('max')
    if qtype in ('text', 'textarea', 'password'):
        if not isinstance(value, str):
            return ['value %r for %r expected to be a string' % (value, var)]
        if low not in ('', None) and len(value) < int(low):
            return ['%r value %r is too small (length must be at least %s)' % (var, value, low)]
        if high not in ('', None) and len(value) > int(high):
            return ['%r value %r is too large (length must be no more than %s)' % (var, value, high)]
    elif qtype in ('integer', 'float'):
        if qtype == 'integer' and type(value) is not int:  # pylint: disable=unidiomatic-typecheck
            return ['value %r for %r expected to be an integer' % (value, var)]
        if qtype == 'float' and type(value) not in (int, float):  # pylint: disable=unidiomatic-typecheck
            return ['value %r for %r expected to be a numeric type' % (value, var)]
        if low not in ('', None) and value < low:
            return ['%r value %r is too small (must be at least %s)' % (var, value, low)]
        if high not in ('', None) and value > high:
            return ['%r value %r is too large (must be no more than %s)' % (var, value, high)]
    elif qtype == 'multiselect':
        if not isinstance(value, list):
            return ['%r value is expected to be a list' % var]
        return ['value %r for %r expected to be one of %s' % (v, var, _choices(item)) for v in value
                if v not in _choices(item)]
    elif qtype == 'multiplechoice' and value not in _choices(item):
        return ['value %r for %r expected to be one of %s' % (value, var, _choices(item))]
    return []


def defaults_of(survey):
    return dict((q['variable'], q['default']) for q in survey['spec'] if 'default' in q)


@pytest.fixture(scope='module')
def config():
    with open(os.path.join(AWX, 'controller_configuration.yml'), encoding='utf-8') as f:
        return yaml.safe_load(f)


def test_every_item_has_the_shape_infra_aap_configuration_documents(config):
    for key, schema in (('controller_templates', TEMPLATE_SCHEMA), ('controller_schedules', SCHEDULE_SCHEMA),
                        ('controller_projects', PROJECT_SCHEMA), ('controller_execution_environments', EE_SCHEMA)):
        assert config.get(key), key
        for item in config[key]:
            problems = [e.message for e in jsonschema.Draft7Validator(schema).iter_errors(item)]
            assert problems == [], (key, item.get('name'), problems)
    names = [t['name'] for t in config['controller_templates']]
    assert len(names) == len(set(names))


def test_job_templates_for_deploy_backup_and_restore_with_the_surveys_asked_for(config):
    templates = dict((t['playbook'], t) for t in config['controller_templates'])
    assert sorted(templates) == ['backup.yml', 'deploy.yml', 'restore.yml']
    asked = dict((p, set(q['variable'] for q in t['survey_spec']['spec'])) for p, t in templates.items())
    assert {'window_release_version', 'djangoops_serial'} <= asked['deploy.yml']
    assert {'djangoops_snapshot_id', 'djangoops_restore_confirm', 'djangoops_serial'} <= asked['restore.yml']
    assert 'djangoops_serial' in asked['backup.yml']
    for t in templates.values():
        assert t['survey_enabled'] is True and t['allow_simultaneous'] is False, t['name']


def test_every_survey_passes_awxs_save_time_validation(config):
    for t in config['controller_templates']:
        assert survey_spec_errors(t['survey_spec']) == [], t['name']


def test_launching_with_the_defaults_and_with_real_answers(config):
    templates = dict((t['playbook'], t['survey_spec']) for t in config['controller_templates'])
    launches = {
        'deploy.yml': [{'window_release_version': '2.4.0'},
                       {'window_release_version': '2.4.0', 'djangoops_serial': '1',
                        'djangoops_max_fail_percentage': 25, 'window_rollback_strategy': 'reverse'}],
        'backup.yml': [{}],
        'restore.yml': [{'djangoops_restore_confirm': 'RESTORE'},
                        {'djangoops_restore_confirm': 'RESTORE', 'djangoops_snapshot_id': '20261124T040512Z-k3j9q2'}],
    }
    for playbook, answers_list in launches.items():
        survey = templates[playbook]
        for answers in answers_list:
            launch = dict(defaults_of(survey), **answers)
            problems = [p for q in survey['spec'] for p in answer_errors(q, launch)]
            assert problems == [], (playbook, answers, problems)
    # The confirmation has no default: a launch without it is refused by the controller itself.
    restore = templates['restore.yml']
    problems = [p for q in restore['spec'] for p in answer_errors(q, defaults_of(restore))]
    assert problems == ["'djangoops_restore_confirm' value missing"]
    problems = [p for q in restore['spec'] for p in answer_errors(q, dict(defaults_of(restore),
                                                                          djangoops_restore_confirm='yes'))]
    assert problems and 'too small' in problems[0]
    deploy = templates['deploy.yml']
    problems = [p for q in deploy['spec'] for p in answer_errors(q, {'window_release_version': '2.4.0',
                                                                     'djangoops_serial': '1',
                                                                     'djangoops_max_fail_percentage': 101,
                                                                     'window_rollback_strategy': 'undo'})]
    assert len(problems) == 2, problems


def test_the_validator_rejects_what_awx_rejects():
    good = {'name': 's', 'description': '', 'spec': [
        {'question_name': 'q', 'variable': 'v', 'type': 'multiplechoice', 'required': True,
         'choices': ['a', 'b'], 'default': 'a'}]}
    assert survey_spec_errors(good) == []

    def broken(change):
        spec = copy.deepcopy(good)
        change(spec)
        return survey_spec_errors(spec)

    assert broken(lambda s: s.pop('description'))
    assert broken(lambda s: s.update(spec=[]))
    assert broken(lambda s: s['spec'][0].pop('required'))
    assert broken(lambda s: s['spec'][0].update(required='yes'))
    assert broken(lambda s: s['spec'][0].update(type='checkbox'))
    assert broken(lambda s: s['spec'][0].update(default='c'))
    assert broken(lambda s: s['spec'][0].update(default='a\nb'))
    assert broken(lambda s: s['spec'][0].pop('choices'))
    assert broken(lambda s: s['spec'][0].update(min='1'))
    assert broken(lambda s: s['spec'].append(dict(s['spec'][0])))
    assert broken(lambda s: s['spec'][0].update(type='integer', default='5'))
    assert broken(lambda s: s['spec'][0].update(type='text', default='$encrypted$'))
    assert [e.message for e in jsonschema.Draft7Validator(TEMPLATE_SCHEMA).iter_errors(
        {'name': 'x', 'survey_enabled': 'yes', 'playbok': 'deploy.yml'})]


def test_references_inside_the_configuration(config):
    ees = set(e['name'] for e in config['controller_execution_environments'])
    projects = set(p['name'] for p in config['controller_projects'])
    templates = dict((t['name'], t) for t in config['controller_templates'])
    for p in config['controller_projects']:
        assert p['default_environment'] in ees
    for t in templates.values():
        assert t['project'] in projects and t['execution_environment'] in ees, t['name']
        assert os.path.isfile(os.path.join(AWX, 'project', t['playbook'])), t['playbook']
    for s in config['controller_schedules']:
        target = templates[s['unified_job_template']]
        # AWX accepts schedule extra_data only for survey variables or with ask_variables_on_launch.
        survey_vars = set(q['variable'] for q in target['survey_spec']['spec'])
        assert target.get('ask_variables_on_launch') or set(s['extra_data']) <= survey_vars, s['name']
        launch = dict(defaults_of(target['survey_spec']), **s['extra_data'])
        assert [p for q in target['survey_spec']['spec'] for p in answer_errors(q, launch)] == [], s['name']
        assert re.match(r'^DTSTART(;TZID=[^:]+)?:\d{8}T\d{6}Z? RRULE:FREQ=(MINUTELY|HOURLY|DAILY|WEEKLY|MONTHLY|YEARLY)'
                        r'(;[A-Z]+=[^; ]+)*$', s['rrule']), s['rrule']


def _collection_playbook(project_playbook):
    with open(os.path.join(AWX, 'project', project_playbook), encoding='utf-8') as f:
        plays = yaml.safe_load(f)
    assert len(plays) == 1
    target = plays[0]['ansible.builtin.import_playbook']
    assert target.startswith('djangoops.maintenance.'), target
    return os.path.join(REPO, 'playbooks', target.rsplit('.', 1)[1] + '.yml')


def test_every_survey_variable_is_read_by_what_the_template_runs(config):
    roles_text = ''
    for top, _dirs, files in os.walk(os.path.join(REPO, 'roles')):
        for name in files:
            if name.endswith('.yml'):
                with open(os.path.join(top, name), encoding='utf-8') as f:
                    roles_text += f.read()
    for t in config['controller_templates']:
        path = _collection_playbook(t['playbook'])
        with open(path, encoding='utf-8') as f:
            playbook_text = f.read()
        for q in t['survey_spec']['spec']:
            pattern = re.compile(r'\b%s\b' % re.escape(q['variable']))
            assert pattern.search(playbook_text) or pattern.search(roles_text), (t['name'], q['variable'])


def test_the_project_playbooks_pass_syntax_check(tmp_path):
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=os.path.join(REPO, '.build', 'collections'),
               ANSIBLE_COLLECTIONS_SCAN_SYS_PATH='false', ANSIBLE_NOCOLOR='1')
    inventory = tmp_path / 'inventory.ini'
    inventory.write_text('[django]\nweb1 ansible_connection=local\n')
    for playbook in ('deploy.yml', 'backup.yml', 'restore.yml'):
        r = subprocess.run([os.path.join(BIN, 'ansible-playbook'), '--syntax-check', '-i', str(inventory),
                            os.path.join(AWX, 'project', playbook)], env=env, stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, universal_newlines=True, check=False, timeout=120)
        assert r.returncode == 0, r.stdout
    with open(os.path.join(AWX, 'project', 'collections', 'requirements.yml'), encoding='utf-8') as f:
        assert [c['name'] for c in yaml.safe_load(f)['collections']] == ['djangoops.maintenance']
